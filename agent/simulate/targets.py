"""The remediation targets a scenario acts on, when the command line names real ones.

* MLflow (``--mlflow-uri``): the scenario's ``registry`` block is created before the
  traffic: registered models with versions 1..N and the serving alias on one. A model
  of that name that simulate did not create (no ``watchkeeper.simulation`` tag) is
  never touched: the scenario fails with the reason instead.
* Kubernetes (``--kubeconfig``): the Deployments the scenario's rules scale are created
  (or reset to their replicas) in their namespaces, labelled as simulate's own.
* :func:`proxied_kubeconfig` writes a kubeconfig that sends the agent through a
  :class:`~agent.simulate.fault_proxy.FaultProxy` (plain HTTP to the proxy, which
  speaks TLS to the real API server with the original CA and passes the token on).

All calls are blocking client calls: run them with ``asyncio.to_thread``.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml

from agent.errors import WatchkeeperError
from simulations.scenario import RegistrySetup

__all__ = ["ensure_deployment", "kube_upstream", "proxied_kubeconfig", "seed_registry"]

SIM_TAG = "watchkeeper.simulation"


def seed_registry(tracking_uri: str, setup: RegistrySetup) -> None:
    """Create each model fresh: versions 1..N, the alias on ``alias_on`` (default the last).

    Indexes are registered models too, tagged ``watchkeeper.kind=index`` (what an index rollback checks).
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    indexes = {name: (model, {"watchkeeper.kind": "index"}) for name, model in setup.indexes.items()}
    for name, (model, kind_tags) in ({n: (m, {}) for n, m in setup.models.items()} | indexes).items():
        try:
            existing = client.get_registered_model(name)
        except MlflowException:
            existing = None
        if existing is not None:
            if existing.tags.get(SIM_TAG) != "true":
                raise WatchkeeperError(
                    f"registered model {name!r} exists on {tracking_uri} and was not created by simulate; "
                    "use an MLflow server (or registry) for simulations only"
                )
            client.delete_registered_model(name)
        client.create_registered_model(name, tags={SIM_TAG: "true", **kind_tags})
        for v in range(1, model.versions + 1):
            client.create_model_version(name, source=f"s3://watchkeeper-simulation/{name}/{v}", tags={SIM_TAG: "true"}, await_creation_for=0)
        client.set_registered_model_alias(name, model.alias, str(model.alias_on or model.versions))
    for name, prompt in setup.prompts.items():
        _reset_prompt(client, name, tracking_uri)
        for v in range(1, prompt.versions + 1):
            client.register_prompt(name=name, template=f"Simulated system prompt v{v}: {{{{question}}}}", tags={SIM_TAG: "true"})
        client.set_prompt_alias(name, prompt.alias, prompt.alias_on or prompt.versions)


def _reset_prompt(client: Any, name: str, tracking_uri: str) -> None:
    """Delete a prompt simulate made before (its versions first); refuse anyone else's."""
    from mlflow.exceptions import MlflowException

    try:
        existing = client.get_prompt(name)
    except MlflowException:
        existing = None
    if existing is None:
        return
    if (existing.tags or {}).get(SIM_TAG) != "true":
        raise WatchkeeperError(f"prompt {name!r} exists on {tracking_uri} and was not created by simulate")
    for version in client.search_prompt_versions(name, max_results=1000):
        client.delete_prompt_version(name, str(version.version))
    client.delete_prompt(name)


def _current(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    contexts = {c["name"]: c["context"] for c in config.get("contexts", [])}
    clusters = {c["name"]: c["cluster"] for c in config.get("clusters", [])}
    context = contexts.get(config.get("current-context", ""), next(iter(contexts.values()), None))
    if context is None or context.get("cluster") not in clusters:
        raise WatchkeeperError("the kubeconfig has no current context with a cluster")
    return context, clusters[context["cluster"]]


def kube_upstream(kubeconfig: str) -> tuple[str, str | bool]:
    """The API server URL and what to verify it with (a CA file path, or True)."""
    config = yaml.safe_load(Path(kubeconfig).read_text(encoding="utf-8"))
    _, cluster = _current(config)
    if cluster.get("certificate-authority"):
        return cluster["server"], str(cluster["certificate-authority"])
    if cluster.get("certificate-authority-data"):
        ca = Path(kubeconfig).with_suffix(".sim-ca.pem")
        ca.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
        return cluster["server"], str(ca)
    return cluster["server"], not cluster.get("insecure-skip-tls-verify", False)


def proxied_kubeconfig(kubeconfig: str, proxy_url: str, out: Path) -> str:
    """A copy of ``kubeconfig`` whose current cluster is ``proxy_url`` (plain HTTP)."""
    config = yaml.safe_load(Path(kubeconfig).read_text(encoding="utf-8"))
    _, cluster = _current(config)
    for key in ("certificate-authority", "certificate-authority-data", "insecure-skip-tls-verify", "tls-server-name"):
        cluster.pop(key, None)
    cluster["server"] = proxy_url
    out.write_text(yaml.safe_dump(config))
    return str(out)


def ensure_deployment(kubeconfig: str, namespace: str, name: str, replicas: int) -> None:
    """Create (or reset) a Deployment of ``replicas`` pause containers for a scale action to change."""
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    api_client = config.new_client_from_config(config_file=kubeconfig)
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    try:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    except ApiException as exc:
        if exc.status != 409:
            raise
    labels = {"app": name, SIM_TAG: "true"}
    body = client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels={"app": name}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": name}),
                spec=client.V1PodSpec(containers=[client.V1Container(name="server", image="registry.k8s.io/pause:3.9")]),
            ),
        ),
    )
    try:
        existing = apps.read_namespaced_deployment(name, namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise
        apps.create_namespaced_deployment(namespace, body)
        return
    if (existing.metadata.labels or {}).get(SIM_TAG) != "true":
        raise WatchkeeperError(f"Deployment {namespace}/{name} exists and was not created by simulate; use a cluster for simulations")
    reset = {"metadata": {"annotations": {k: None for k in (existing.metadata.annotations or {}) if k.startswith("watchkeeper.io/")}},
             "spec": {"replicas": replicas}}
    apps.patch_namespaced_deployment(name, namespace, reset)
