"""The kustomize manifests: rendered as a user applies them, checked, and sent to a real API server.

The static checks need only kubectl (for ``kubectl kustomize``). The server test uses the
``kube`` fixture (a real kube-apiserver v1.20 + controller-manager, tests/k8s_testbed.py):
it installs minimal CRDs for the Prometheus Operator's ServiceMonitor and PrometheusRule,
server-side dry-runs every rendered object into a test namespace, checks that the server
kept every field as written (1.20 has no strict field validation, so a misspelled field
would otherwise be dropped silently), then creates them and waits for the
controller-manager to create the fleet's Pods from the Deployment's template.
"""

from __future__ import annotations

import copy
import time
import uuid
from typing import Any

import pytest
import yaml

from tests.deploy.manifests import COMPOSE, KUBE, ROOT, find, kubectl, render



@pytest.fixture(scope="module")
def fleet() -> list[dict[str, Any]]:
    if kubectl() is None:
        pytest.skip("kubectl >= 1.21 (kustomize v4+) is not installed")
    return render("overlays/fleet")


@pytest.fixture(scope="module")
def sidecar() -> list[dict[str, Any]]:
    if kubectl() is None:
        pytest.skip("kubectl >= 1.21 (kustomize v4+) is not installed")
    return render("overlays/sidecar")


def _pod_labels(deployment: dict[str, Any]) -> dict[str, str]:
    return deployment["spec"]["template"]["metadata"]["labels"]


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_fleet_agent_is_hardened_probed_and_sized(fleet):
    deployment = find(fleet, "Deployment", "watchkeeper")
    config_map = _configmap(fleet, "watchkeeper-config")
    config = config_map["data"]
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    (agent,) = pod["containers"]
    assert spec["replicas"] <= int(config["WATCHKEEPER_CREATE_TOPICS"]), "replicas beyond the partitions sit idle"
    assert config["WATCHKEEPER_ACTIONS_MODE"] == "dry-run"
    assert pod["serviceAccountName"] == find(fleet, "ServiceAccount")["metadata"]["name"]
    assert {"startupProbe", "livenessProbe", "readinessProbe"} <= set(agent)
    assert agent["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert set(agent["resources"]) == {"requests", "limits"}
    assert pod["securityContext"]["runAsNonRoot"] and agent["securityContext"]["readOnlyRootFilesystem"]
    assert agent["securityContext"]["capabilities"]["drop"] == ["ALL"]
    env_from = {e.get("configMapRef", e.get("secretRef", {})).get("name") for e in agent["envFrom"]}
    assert config_map["metadata"]["name"] in env_from and config_map["metadata"]["name"] != "watchkeeper-config"  # hashed
    # rules: a ConfigMap mounted as a directory (no subPath) under a stable name, so updates reach the agent live
    mounts = {m["name"]: m for m in agent["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "subPath" not in mounts["rules"] and mounts["rules"]["mountPath"] == config["WATCHKEEPER_RULES"]
    assert volumes["rules"]["configMap"]["name"] == "watchkeeper-rules"
    assert _configmap(fleet, "watchkeeper-rules")["metadata"]["name"] == "watchkeeper-rules"


def test_fleet_mounts_the_approvers_secret_where_the_agent_reads_it(fleet):
    """HTTP API tokens come from an optional Secret (docs/security-http.md), readable by the agent only."""
    config = _configmap(fleet, "watchkeeper-config")["data"]
    pod = find(fleet, "Deployment", "watchkeeper")["spec"]["template"]["spec"]
    (agent,) = pod["containers"]
    mount = {m["name"]: m for m in agent["volumeMounts"]}["approvers"]
    secret = {v["name"]: v for v in pod["volumes"]}["approvers"]["secret"]
    path = config["WATCHKEEPER_APPROVERS_FILE"]
    assert path.rpartition("/")[0] == mount["mountPath"] and mount["readOnly"]
    assert secret["secretName"] == "watchkeeper-approvers" and secret["optional"] is True
    assert secret["defaultMode"] & 0o077 == 0, "group read comes from fsGroup; nobody else may read a token"
    assert "APPROVE_TOKEN" not in yaml.safe_dump(fleet), "the single-token shorthand is not how the fleet is configured"


def _configmap(docs, name: str) -> dict[str, Any]:
    """The ConfigMap generated as ``name`` (kustomize may add a content-hash suffix)."""
    matches = [d for d in docs if d["kind"] == "ConfigMap"
               and (d["metadata"]["name"] == name or d["metadata"]["name"].rpartition("-")[0] == name)]
    assert len(matches) == 1, [d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"]
    return matches[0]


def test_fleet_service_pdb_and_servicemonitor_select_the_agents(fleet):
    labels = _pod_labels(find(fleet, "Deployment", "watchkeeper"))
    service = find(fleet, "Service", "watchkeeper")
    assert _selects(service["spec"]["selector"], labels)
    assert _selects(find(fleet, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"], labels)
    monitor = find(fleet, "ServiceMonitor")
    assert _selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= {p["name"] for p in service["spec"]["ports"]}
    assert all(d["metadata"].get("namespace") == "watchkeeper" for d in fleet if d["kind"] != "Namespace")
    binding = find(fleet, "RoleBinding")
    assert binding["subjects"][0]["namespace"] == "watchkeeper"


def test_shipped_rules_in_the_configmap_match_rules_and_load():
    from agent.rules import load_rules
    from agent.rules.pricing import PriceTable

    base_rules = KUBE / "base" / "rules"
    shipped = sorted(p.name for p in (ROOT / "rules").glob("*.yaml"))
    assert sorted(p.name for p in base_rules.glob("*.yaml")) == shipped
    for name in shipped:
        assert (base_rules / name).read_text() == (ROOT / "rules" / name).read_text(), (
            f"deploy/kubernetes/base/rules/{name} differs from rules/{name}: run python deploy/kubernetes/sync.py")
    assert (KUBE / "base/pricing/llm_prices.yaml").read_text() == (ROOT / "rules/pricing/llm_prices.yaml").read_text()
    ruleset = load_rules([base_rules], PriceTable.load(KUBE / "base/pricing/llm_prices.yaml"))
    assert len(ruleset.rules) > 0
    kustomization = yaml.safe_load((KUBE / "base/kustomization.yaml").read_text())
    (rules_cm,) = [g for g in kustomization["configMapGenerator"] if g["name"] == "watchkeeper-rules"]
    assert sorted(rules_cm["files"]) == [f"rules/{n}" for n in shipped]


def test_sidecar_overlay_adds_the_gpu_sampler(sidecar):
    deployment = find(sidecar, "Deployment", "checkout-fraud-detector")
    containers = {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}
    assert set(containers) == {"server", "gpu-sampler"}
    sampler = containers["gpu-sampler"]
    assert sampler["args"] == ["gpu"] and "nvidia.com/gpu" not in sampler["resources"].get("limits", {})
    env = {e["name"]: e for e in sampler["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    emit_config = _configmap(sidecar, "watchkeeper-emit")
    assert "WATCHKEEPER_KAFKA_BOOTSTRAP" in emit_config["data"]
    for container in containers.values():
        assert container["envFrom"][0]["configMapRef"]["name"] == emit_config["metadata"]["name"]


def test_prometheusrule_equals_the_compose_rules_and_passes_promtool(tmp_path):
    import shutil
    import subprocess

    rule = yaml.safe_load((KUBE / "base/prometheusrule.yaml").read_text())
    compose_rules = yaml.safe_load((COMPOSE / "prometheus/watchkeeper-agent.rules.yml").read_text())
    assert rule["spec"]["groups"] == compose_rules["groups"], "stale: run python deploy/kubernetes/sync.py"
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed (Debian prometheus; run .ci/setup)")
    extracted = tmp_path / "prometheusrule-groups.yml"
    extracted.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    check = subprocess.run(["promtool", "check", "rules", str(extracted)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    names = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert {"WatchkeeperConsumerLagHigh", "WatchkeeperDeadLetterRateHigh", "WatchkeeperAlertmanagerSendFailing",
            "WatchkeeperActionsFailing", "WatchkeeperPartitionStalled", "WatchkeeperInternalErrors"} <= names


# --- against a real API server -------------------------------------------------------------

_CRDS = [("monitoring.coreos.com", "ServiceMonitor", "servicemonitors"),
         ("monitoring.coreos.com", "PrometheusRule", "prometheusrules")]
_CUSTOM_KINDS = {kind for _, kind, _ in _CRDS}


def _crd(group: str, kind: str, plural: str) -> dict[str, Any]:
    """The smallest CRD that serves ``kind`` and keeps whatever spec it is given."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": kind + "List"},
            "versions": [{
                "name": "v1", "served": True, "storage": True,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
            }],
        },
    }


def _for_test_server(doc: dict[str, Any], namespace: str) -> dict[str, Any]:
    """Move an object into the test namespace; adapt what a 1.20 server cannot serve.

    PodDisruptionBudget is policy/v1 in the manifests (every supported cluster, 1.21+);
    1.20 serves the same schema as policy/v1beta1 only.
    """
    doc = copy.deepcopy(doc)
    doc["metadata"]["namespace"] = namespace
    if doc["kind"] == "PodDisruptionBudget" and doc["apiVersion"] == "policy/v1":
        doc["apiVersion"] = "policy/v1beta1"
    for subject in doc.get("subjects", []):
        if subject.get("kind") == "ServiceAccount":
            subject["namespace"] = namespace
    if doc["kind"] == "Secret":  # kustomize wraps base64 at 76 columns; the server stores it unwrapped
        doc["data"] = {k: "".join(v.split()) for k, v in doc.get("data", {}).items()}
    return doc


def _dropped_fields(sent: Any, stored: Any, path: str = "") -> list[str]:
    """Paths of ``sent`` that the server did not keep as written (pruned or changed)."""
    if isinstance(sent, dict):
        if not isinstance(stored, dict):
            return [path or "/"]
        out = []
        for key, value in sent.items():
            if key not in stored:
                out.append(f"{path}/{key}")
            else:
                out.extend(_dropped_fields(value, stored[key], f"{path}/{key}"))
        return out
    if isinstance(sent, list):
        if not isinstance(stored, list) or len(stored) != len(sent):
            return [path]
        return [p for i, (a, b) in enumerate(zip(sent, stored, strict=True)) for p in _dropped_fields(a, b, f"{path}[{i}]")]
    return [] if sent == stored or str(sent) == str(stored) else [f"{path}: {sent!r} -> {stored!r}"]


def _install_crds(api) -> None:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    extensions = client.ApiextensionsV1Api(api)
    for group, kind, plural in _CRDS:
        try:
            extensions.create_custom_resource_definition(_crd(group, kind, plural))
        except ApiException as error:
            if error.status != 409:  # another test installed it already
                raise
        _wait(lambda name=f"{plural}.{group}": any(
            c.type == "Established" and c.status == "True"
            for c in (extensions.read_custom_resource_definition(name).status.conditions or [])), 60, f"CRD {kind}")


def _wait(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")


@pytest.mark.integration
@pytest.mark.parametrize("overlay", ["overlays/fleet", "overlays/sidecar", "overlays/dcgm-poller", "overlays/gpu-sampler", "alertmanager"])
def test_manifests_are_accepted_by_the_api_server(kube, overlay):
    from kubernetes import client
    from kubernetes.dynamic import DynamicClient

    if kubectl() is not None:
        docs = render(overlay)
    elif overlay == "overlays/fleet":
        docs = render("base")  # no kustomize: the base's own files, as written (no generated ConfigMaps)
    else:
        pytest.skip("kubectl >= 1.21 (kustomize v4+) is needed to render this overlay")
    with kube.api_client() as api:
        _install_crds(api)
        dynamic = DynamicClient(api)
        namespace = kube.create_namespace(f"wk-deploy-{uuid.uuid4().hex[:8]}")
        objects = []
        for doc in docs:
            if doc["kind"] == "Namespace":  # cluster-scoped: validate it, but test inside our own namespace
                dynamic.resources.get(api_version="v1", kind="Namespace").create(body=doc, dry_run="All")
                continue
            if doc["kind"] in _CUSTOM_KINDS:  # see test_custom_resources_are_accepted: it may crash the server
                continue
            body = _for_test_server(doc, namespace)
            resource = dynamic.resources.get(api_version=body["apiVersion"], kind=body["kind"])
            preview = resource.create(body=body, namespace=namespace, dry_run="All").to_dict()
            dropped = _dropped_fields(body, preview)
            assert not dropped, f"{body['kind']}/{body['metadata']['name']}: the server did not keep {dropped}"
            objects.append((resource, body))
        for resource, body in objects:
            resource.create(body=body, namespace=namespace)
        deployments = [b for _, b in objects if b["kind"] == "Deployment"]
        core = client.CoreV1Api(api)
        for deployment in deployments:  # the controller-manager turns the template into valid Pods
            selector = ",".join(f"{k}={v}" for k, v in deployment["spec"]["selector"]["matchLabels"].items())
            replicas = deployment["spec"]["replicas"]

            def pods_created(s=selector, n=replicas):
                items = core.list_namespaced_pod(namespace, label_selector=s).items
                return items if len(items) >= n else None

            pods = _wait(pods_created, 90, f"pods of {deployment['metadata']['name']}")
            assert len(pods) == replicas
            names = [c.name for c in pods[0].spec.containers]
            assert names == [c["name"] for c in deployment["spec"]["template"]["spec"]["containers"]]


def test_kustomize_renders_without_kubectl_fallback():
    docs = render("base") if kubectl() is None else [
        d for p in sorted((KUBE / "base").glob("*.yaml")) if p.name != "kustomization.yaml"
        for d in yaml.safe_load_all(p.read_text()) if d]
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "PodDisruptionBudget", "ServiceMonitor", "PrometheusRule", "ServiceAccount",
            "Role", "RoleBinding"} <= kinds


@pytest.mark.integration
def test_custom_resources_are_accepted(tmp_path):
    """ServiceMonitor and PrometheusRule into minimal CRDs, on a private API server.

    Private, because the test server built by .ci/k8s-testbed (Kubernetes 1.20 compiled
    with Go 1.19) may die on its first custom resource: 1.20 vendors modern-go/reflect2
    1.0.1, which faults iterating maps under Go >= 1.18 (fixed in reflect2 1.0.2). When it
    does, this test skips with that reason instead of taking the shared server down.
    """
    from kubernetes.dynamic import DynamicClient

    from tests.k8s_testbed import KubeCluster, missing_binaries

    reason = missing_binaries()
    if reason:
        pytest.skip(f"no Kubernetes control plane: {reason}")
    if kubectl() is None:
        pytest.skip("kubectl >= 1.21 (kustomize v4+) is needed to render the overlays")
    custom = [d for d in render("overlays/fleet") if d["kind"] in _CUSTOM_KINDS]
    assert {d["kind"] for d in custom} == _CUSTOM_KINDS
    (tmp_path / "kube").mkdir()
    with KubeCluster(tmp_path / "kube") as cluster:
        namespace = cluster.create_namespace("wk-custom")
        with cluster.api_client() as api:
            _install_crds(api)
            dynamic = DynamicClient(api)
            for doc in custom:
                body = _for_test_server(doc, namespace)
                resource = dynamic.resources.get(api_version=body["apiVersion"], kind=body["kind"])
                try:
                    stored = resource.create(body=body, namespace=namespace).to_dict()
                except Exception:  # noqa: BLE001 - told apart below: a dead server, or a real refusal
                    deadline = time.monotonic() + 10  # a crashing Go process takes a moment to exit
                    while "kube-apiserver" in cluster.pids() and time.monotonic() < deadline:
                        time.sleep(0.2)
                    if "kube-apiserver" not in cluster.pids():
                        pytest.skip("the test kube-apiserver crashed on a custom resource (Go >= 1.18 with the "
                                    "reflect2 1.0.1 that Kubernetes 1.20 vendors); rebuild it with reflect2 >= 1.0.2")
                    raise
                assert not _dropped_fields(body, stored), _dropped_fields(body, stored)
