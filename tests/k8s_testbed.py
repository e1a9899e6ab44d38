"""A real Kubernetes control plane for the integration tests: etcd, kube-apiserver, kube-controller-manager.

The binaries are v1.20.2 built from Debian bookworm's source package by
``.ci/k8s-testbed`` (cached under ``~/.cache/watchkeeper/k8s-v1.20.2/bin``); etcd is
Debian's. See ``../shared/TESTBED.md`` ("Kubernetes") for what this server does and
does not do: there is no scheduler and no kubelet, so Pods stay Pending and a
Deployment's ``availableReplicas`` never reaches ``replicas``.

Identities:

* the admin: a static token (``--token-auth-file``) in group ``system:masters``;
* least-privileged agents: a ServiceAccount whose token comes from the Secret that
  1.20's token controller (in the controller-manager, given the service-account
  signing key) creates for every ServiceAccount. 1.20 has no TokenRequest-by-default
  for clients and no auto-generation switch-off yet, so this is the closest thing to
  what the agent's Pod would mount; :meth:`KubeCluster.service_account_kubeconfig`
  waits for that Secret, or creates one of type ``kubernetes.io/service-account-token``
  if the controller has not done so in time.

Everything binds 127.0.0.1 on free ports and is stopped by PID (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from agent.runtime.server_process import launch, stop_process, wait_ready
from tests.testbed import _free_port

__all__ = ["ETCD", "K8S_BIN", "KubeCluster", "deployment_manifest", "missing_binaries", "wait_until"]

K8S_BIN = Path(os.environ.get("WATCHKEEPER_K8S_CACHE", Path.home() / ".cache/watchkeeper/k8s-v1.20.2")) / "bin"
ETCD = Path(shutil.which("etcd") or K8S_BIN / "etcd")  # K8S_BIN: bookworm's, where the release has none
_HOST = "127.0.0.1"
_BINARIES = ("kube-apiserver", "kube-controller-manager")


def missing_binaries(bin_dir: Path = K8S_BIN) -> str | None:
    """Why the cluster cannot start here, or None when every binary is present."""
    if not ETCD.is_file():
        return f"{ETCD} is not installed (Debian package etcd-server; run .ci/k8s-testbed)"
    if shutil.which("openssl") is None:
        return "openssl is not installed (needed for the service-account key pair)"
    for name in _BINARIES:
        if not (bin_dir / name).is_file():
            return f"{bin_dir / name} is missing (build it with .ci/k8s-testbed, about 3 minutes)"
    return None


class KubeCluster:
    """etcd + kube-apiserver (RBAC, TLS) + kube-controller-manager on 127.0.0.1.

    Parameters
    ----------
    workdir:
        Where data, keys, certificates, kubeconfigs and logs go (a temp folder if None).
    bin_dir:
        Folder with ``kube-apiserver`` and ``kube-controller-manager``.
    start_timeout_s:
        How long to wait for the API server and the controllers (generous: the CI
        machine is shared).

    ``admin_kubeconfig`` is a kubeconfig for a ``system:masters`` user; :meth:`api_client`
    builds an official-client ``ApiClient`` from any kubeconfig.
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str] | None = None,
        *,
        bin_dir: Path = K8S_BIN,
        start_timeout_s: float = 120.0,
    ) -> None:
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="wk-kube-"))
        self.bin_dir = bin_dir
        self.start_timeout_s = start_timeout_s
        self.port = _free_port()
        self.admin_token = secrets.token_hex(16)
        self.admin_kubeconfig = self.workdir / "admin.kubeconfig"
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    # -- lifecycle --------------------------------------------------------------------

    @property
    def server(self) -> str:
        return f"https://{_HOST}:{self.port}"

    @property
    def ca_file(self) -> Path:
        return self.workdir / "certs" / "apiserver.crt"

    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self._procs.items() if p.poll() is None}

    def start(self) -> KubeCluster:
        reason = missing_binaries(self.bin_dir)
        if reason:
            raise RuntimeError(reason)
        try:
            self._start_etcd()
            self._start_apiserver()
            self.write_kubeconfig(self.admin_kubeconfig, self.admin_token, "admin")
            self._start_controller_manager()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop in reverse order of start, each by its PID."""
        for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
            stop_process(self._procs.pop(name, None))

    def __enter__(self) -> KubeCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        proc = launch(argv, self.workdir / f"{name}.log")
        self._procs[name] = proc
        return proc

    def _wait(self, name: str, ready: Any, what: str, url: str) -> None:
        wait_ready(
            self._procs[name],
            ready,
            name=name,
            url=url,
            log_path=self.workdir / f"{name}.log",
            timeout_s=self.start_timeout_s,
            poll_s=0.1,
            what=what,
        )

    def _start_etcd(self) -> None:
        client, peer = _free_port(), _free_port()
        self.etcd_url = f"http://{_HOST}:{client}"
        self._spawn(
            "etcd",
            [
                str(ETCD),
                "--name=wk",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls=http://{_HOST}:{peer}",
                f"--initial-advertise-peer-urls=http://{_HOST}:{peer}",
                f"--initial-cluster=wk=http://{_HOST}:{peer}",
                "--log-level=warn",
            ],
        )
        self._wait("etcd", lambda: self._http_ok(f"{self.etcd_url}/health"), "healthy", self.etcd_url)

    def _start_apiserver(self) -> None:
        keys = self.workdir / "keys"
        keys.mkdir(exist_ok=True)
        sa_key, sa_pub = keys / "sa.key", keys / "sa.pub"
        if not sa_key.exists():
            subprocess.run(["openssl", "genrsa", "-out", str(sa_key), "2048"], check=True, capture_output=True)
            subprocess.run(
                ["openssl", "rsa", "-in", str(sa_key), "-pubout", "-out", str(sa_pub)], check=True, capture_output=True
            )
        self.sa_key = sa_key
        tokens = keys / "tokens.csv"
        tokens.write_text(f'{self.admin_token},admin,admin-uid,"system:masters"\n')
        self._spawn(
            "kube-apiserver",
            [
                str(self.bin_dir / "kube-apiserver"),
                f"--etcd-servers={self.etcd_url}",
                f"--bind-address={_HOST}",
                f"--advertise-address={_HOST}",
                f"--secure-port={self.port}",
                "--insecure-port=0",
                f"--cert-dir={self.workdir / 'certs'}",
                f"--token-auth-file={tokens}",
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={sa_pub}",
                f"--service-account-signing-key-file={sa_key}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--disable-admission-plugins=ServiceAccount",
                "--v=1",
            ],
        )
        self._wait("kube-apiserver", lambda: self._http_ok(f"{self.server}/readyz", tls=True), "ready (/readyz)", self.server)

    def _start_controller_manager(self) -> None:
        self._spawn(
            "kube-controller-manager",
            [
                str(self.bin_dir / "kube-controller-manager"),
                f"--kubeconfig={self.admin_kubeconfig}",
                "--leader-elect=false",
                "--port=0",
                "--secure-port=0",
                f"--bind-address={_HOST}",
                f"--service-account-private-key-file={self.sa_key}",
                f"--root-ca-file={self.ca_file}",
                # fast HPA reconciliation, so a test sees the HPA act on a raised minReplicas
                "--horizontal-pod-autoscaler-sync-period=2s",
                "--v=1",
            ],
        )
        # The service-account controller creates "default" in every namespace: it shows
        # the controllers run and can write, which is what the tests rely on.
        self._wait(
            "kube-controller-manager",
            lambda: self._get_ok("/api/v1/namespaces/default/serviceaccounts/default"),
            "ready (no default ServiceAccount)",
            self.server,
        )

    def _ssl(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def _http_ok(self, url: str, tls: bool = False) -> bool:
        request = urllib.request.Request(url)
        if tls:
            if not self.ca_file.exists():
                return False
            request.add_header("Authorization", f"Bearer {self.admin_token}")
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=self._ssl() if tls else None)
        )
        try:
            with opener.open(request, timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError, ssl.SSLError):
            return False

    def _get_ok(self, path: str) -> bool:
        return self._http_ok(f"{self.server}{path}", tls=True)

    # -- identities -------------------------------------------------------------------

    def write_kubeconfig(self, path: Path, token: str, user: str, namespace: str = "default") -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "wk", "cluster": {"server": self.server, "certificate-authority": str(self.ca_file)}}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": user, "context": {"cluster": "wk", "user": user, "namespace": namespace}}],
            "current-context": user,
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)
        return path

    def api_client(self, kubeconfig: Path | None = None) -> Any:
        """An official-client ``ApiClient`` for ``kubeconfig`` (the admin's by default)."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(kubeconfig or self.admin_kubeconfig))

    def create_namespace(self, name: str) -> str:
        from kubernetes import client

        with self.api_client() as api:
            client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
        return name

    def apply(self, documents: list[dict[str, Any]], namespace: str) -> None:
        """Create namespaced objects (ServiceAccount, Role, RoleBinding, Deployment...) as the admin."""
        from kubernetes import utils

        with self.api_client() as api:
            for doc in documents:
                utils.create_from_dict(api, doc, namespace=namespace)

    def service_account_token(self, namespace: str, name: str, timeout_s: float = 60.0) -> str:
        """The token of ServiceAccount ``name`` (which must exist), from its token Secret."""
        from kubernetes import client

        with self.api_client() as api:
            core = client.CoreV1Api(api)
            deadline = time.monotonic() + timeout_s
            created = False
            while True:
                for secret in core.list_namespaced_secret(namespace).items:
                    annotations = secret.metadata.annotations or {}
                    if (
                        secret.type == "kubernetes.io/service-account-token"
                        and annotations.get("kubernetes.io/service-account.name") == name
                        and (secret.data or {}).get("token")
                    ):
                        return base64.b64decode(secret.data["token"]).decode()
                if not created and time.monotonic() > deadline - timeout_s / 2:
                    # The token controller has not made one yet: ask it to fill ours.
                    core.create_namespaced_secret(
                        namespace,
                        {
                            "metadata": {
                                "generateName": f"{name}-token-",
                                "annotations": {"kubernetes.io/service-account.name": name},
                            },
                            "type": "kubernetes.io/service-account-token",
                        },
                    )
                    created = True
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no token for ServiceAccount {namespace}/{name} within {timeout_s:g} s")
                time.sleep(0.2)

    def service_account_kubeconfig(self, namespace: str, name: str) -> Path:
        """A kubeconfig that authenticates as ServiceAccount ``namespace/name`` (created if absent)."""
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        with self.api_client() as api:
            try:
                client.CoreV1Api(api).create_namespaced_service_account(namespace, {"metadata": {"name": name}})
            except ApiException as error:
                if error.status != 409:
                    raise
        token = self.service_account_token(namespace, name)
        path = self.workdir / f"sa-{namespace}-{name}.kubeconfig"
        return self.write_kubeconfig(path, token, f"system:serviceaccount:{namespace}:{name}", namespace)

    def kubectl(self, *args: str, kubeconfig: Path | None = None) -> str:
        """Run the kubectl built beside the servers (for debugging and tests); stdout, or RuntimeError."""
        binary = self.bin_dir / "kubectl"
        result = subprocess.run(
            [str(binary), f"--kubeconfig={kubeconfig or self.admin_kubeconfig}", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout

    def __repr__(self) -> str:
        return f"<KubeCluster {self.server} pids={self.pids()}>"


def deployment_manifest(name: str, replicas: int, *, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A small apps/v1 Deployment (its Pods stay Pending here: there is no kubelet)."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name, **(labels or {})}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]},
            },
        },
    }


def wait_until(predicate: Any, timeout_s: float = 60.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy (returned) or fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout_s:g} s (last: {value!r})")
        time.sleep(0.1)  # poll interval, bounded by the deadline
