"""The local stack (deploy/compose), the images, the dashboard and the alert rules, checked
with the tools that will read them: PyYAML for compose (no Docker engine here), promtool,
amtool, and the agent's own metric registry."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from tests.deploy.manifests import COMPOSE, IN_FLIGHT_METRICS, KUBE, ROOT, exported_metric_names, metric_names

needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (run .ci/setup)")
needs_amtool = pytest.mark.skipif(shutil.which("amtool") is None, reason="amtool not installed (run .ci/setup)")
_SECRETISH = re.compile(r"PASSWORD|SECRET|TOKEN|WEBHOOK|API_KEY|CREDENTIAL", re.I)
_VAR = re.compile(r"(?<!\$)\$\{([A-Z0-9_]+)(:?[-?][^}]*)?\}")  # $${X} is the container's, not compose's


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((COMPOSE / "compose.yaml").read_text())


def _env_example() -> set[str]:
    names = set()
    for line in (COMPOSE / ".env.example").read_text().splitlines():
        names.update(re.findall(r"(?:^|\s|#\s?)([A-Z][A-Z0-9_]+)=", line))
    return names


def test_compose_has_the_production_services(compose):
    services = compose["services"]
    assert {"kafka", "prometheus", "alertmanager", "postgres", "mlflow", "grafana", "agent", "example-inference"} <= set(services)
    for name, service in services.items():
        assert "image" in service or "build" in service, f"{name} has neither image nor build"
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
    kafka_env = services["kafka"]["environment"]
    assert kafka_env["KAFKA_PROCESS_ROLES"] == "broker,controller" and "KAFKA_CONTROLLER_QUORUM_VOTERS" in kafka_env
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "postgresql://" in " ".join(services["mlflow"]["command"])
    assert services["agent"]["build"]["target"] == "agent"
    assert services["agent"]["environment"]["WATCHKEEPER_ACTIONS_MODE"].endswith(":-dry-run}")


def test_compose_volumes_are_named_and_bind_mounts_exist(compose):
    declared = set(compose["volumes"])
    used = set()
    for name, service in compose["services"].items():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith((".", "/")):
                assert (COMPOSE / source).exists(), f"{name}: bind mount {source} does not exist"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"
                used.add(source)
    assert used == declared
    for stateful in ("kafka", "postgres", "prometheus", "grafana", "mlflow", "alertmanager"):
        assert any(not m.startswith((".", "/")) for m in compose["services"][stateful]["volumes"]), stateful


def test_compose_secrets_and_endpoints_come_from_the_environment(compose):
    documented = _env_example()
    for name, secret in compose["secrets"].items():
        assert set(secret) == {"environment"}, f"secret {name} must come from an environment variable"
        assert secret["environment"] in documented
    text = (COMPOSE / "compose.yaml").read_text()
    for var, default in _VAR.findall(text):
        if not default:
            assert var in documented, f"${{{var}}} has no default and is not in .env.example"
    for service_name, service in compose["services"].items():
        env = service.get("environment", {})
        for key, value in env.items():
            if _SECRETISH.search(key):
                assert key.endswith("_FILE") and str(value).startswith("/run/secrets/") or _VAR.fullmatch(str(value)), (
                    f"{service_name}: {key} must be a ${{VAR}} reference or a secret file, not a literal")
            if key.endswith(("_URL", "_URI", "_BOOTSTRAP")) and service_name in ("agent", "example-inference", "gpu-sampler"):
                assert _VAR.search(str(value)), f"{service_name}: endpoint {key} must be overridable (${{VAR:-default}})"
    for secret in ("SLACK_WEBHOOK_URL", "MLFLOW_DB_PASSWORD", "GRAFANA_ADMIN_PASSWORD"):
        assert secret not in json.dumps(compose["services"]), f"{secret} leaks into a service definition"


def test_compose_mounts_the_shipped_alertmanager_config_and_dashboard(compose):
    alertmanager = compose["services"]["alertmanager"]
    assert "../alertmanager/alertmanager.yml:/etc/alertmanager/alertmanager.yml:ro" in alertmanager["volumes"]
    am_config = yaml.safe_load((ROOT / "deploy/alertmanager/alertmanager.yml").read_text())
    assert alertmanager["secrets"][0]["target"] == am_config["global"]["slack_api_url_file"]
    provider = yaml.safe_load((COMPOSE / "grafana/provisioning/dashboards/watchkeeper.yml").read_text())
    folder = provider["providers"][0]["options"]["path"]
    assert any(m.startswith("../grafana/watchkeeper.json:" + folder + "/") for m in compose["services"]["grafana"]["volumes"])
    datasource = yaml.safe_load((COMPOSE / "grafana/provisioning/datasources/prometheus.yml").read_text())
    assert datasource["datasources"][0]["type"] == "prometheus"


@needs_promtool
def test_prometheus_config_and_agent_rules_pass_promtool():
    prometheus = COMPOSE / "prometheus"
    for args in (["check", "config", "prometheus.yml"], ["test", "rules", "watchkeeper-agent.rules.test.yml"]):
        result = subprocess.run(["promtool", *args], cwd=prometheus, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
    scrape = yaml.safe_load((prometheus / "prometheus.yml").read_text())
    assert "watchkeeper" in {job["job_name"] for job in scrape["scrape_configs"]}  # WatchkeeperDown selects on it


@needs_amtool
@pytest.mark.parametrize("path", ["deploy/alertmanager/alertmanager.yml", "deploy/kubernetes/alertmanager/alertmanager.yaml"])
def test_alertmanager_examples_pass_amtool(path):
    result = subprocess.run(["amtool", "check-config", str(ROOT / path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


def test_kubernetes_alertmanager_routes_like_the_shipped_example():
    shipped = yaml.safe_load((ROOT / "deploy/alertmanager/alertmanager.yml").read_text())
    operator = yaml.safe_load((KUBE / "alertmanager/alertmanager.yaml").read_text())
    shipped["global"].pop("slack_api_url_file")
    assert operator["global"].pop("slack_api_url_file") == "/etc/alertmanager/secrets/slack-webhook/url"
    assert operator == shipped


def _load_dashboard_builder():
    import importlib.util

    spec = importlib.util.spec_from_file_location("wk_dashboard", ROOT / "deploy/grafana/dashboard.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dashboard_json_is_generated_and_in_sync():
    builder = _load_dashboard_builder()
    expected = builder.render()
    for path in builder.OUTPUTS:
        assert path.read_text() == expected, f"{path} is stale: run python deploy/grafana/dashboard.py"
    dashboard = json.loads(expected)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert all(p.get("targets") for p in dashboard["panels"] if p["type"] != "row")


def test_every_metric_in_the_dashboard_and_alerts_is_exported():
    from watchkeeper_emit.metrics import METRIC_NAMES

    exported = exported_metric_names() | set(METRIC_NAMES)
    queries = [t["expr"] for p in json.loads((ROOT / "deploy/grafana/watchkeeper.json").read_text())["panels"]
               for t in p.get("targets", [])]
    rules = yaml.safe_load((KUBE / "base/prometheusrule.yaml").read_text())
    queries += [r["expr"] for g in rules["spec"]["groups"] for r in g["rules"]]
    used = set().union(*(metric_names(q) for q in queries))
    unknown = used - exported - IN_FLIGHT_METRICS
    assert not unknown, f"not exported by the agent or the emitter: {sorted(unknown)}"
    assert {"watchkeeper_consumer_lag", "watchkeeper_dead_letters_total", "watchkeeper_alertmanager_send_failures_total",
            "watchkeeper_action_failures_total", "watchkeeper_partition_stalled"} <= used


def test_emitter_metric_names_are_what_it_exports():
    from prometheus_client import CollectorRegistry, generate_latest

    from watchkeeper_emit import Emitter
    from watchkeeper_emit.metrics import METRIC_NAMES

    registry = CollectorRegistry()
    emitter = Emitter("x:1", metrics_registry=registry, max_buffer=1)
    emitter.emit({"type": "gpu"})
    emitter.emit({"type": "gpu"})
    text = generate_latest(registry).decode()
    for name in METRIC_NAMES:
        assert re.search(rf"^{name}\{{", text, re.M), name


def test_dockerfile_targets_are_slim_non_root_and_checked():
    text = (ROOT / "deploy/docker/Dockerfile").read_text()
    stages = {name: base for base, name in re.findall(r"^FROM (\S+) AS (\S+)", text, re.M)}
    assert {"agent", "emit", "example"} <= set(stages)
    assert stages["runtime"].startswith("python:") and "slim" in stages["runtime"]
    for target in ("agent", "emit", "example"):
        assert stages[target] == "runtime", f"{target} must build on the slim runtime stage"
        body = text.split(f" AS {target}\n", 1)[1].split("\nFROM ", 1)[0]
        assert re.search(r"^USER 10001", body, re.M), f"{target} must run as the non-root user"
        assert "HEALTHCHECK" in body
    assert "[test" not in text and "tests" not in re.findall(r"^COPY (\S+)", text, re.M)
    for source in re.findall(r"^COPY (?!--from)(?:--\S+ )*(\S+) ", text, re.M):
        assert (ROOT / source).exists(), f"COPY {source}: no such path in the repository"
    ignore = (ROOT / "deploy/docker/Dockerfile.dockerignore").read_text()
    assert "!agent/**" in ignore and "!tests" not in ignore
