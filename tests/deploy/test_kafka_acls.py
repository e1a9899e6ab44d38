"""The example Kafka ACLs (deploy/kafka/acls.sh, deploy/kubernetes/kafka/kafka-users.yaml) match the agent.

The script is run for real with ``kafka-acls.sh`` replaced by a recorder, so what is
checked is exactly the commands an operator would run; the Strimzi file is read as
YAML. Both must grant the same ACLs, name the topics and groups the agent uses by
default, and keep the trust boundary of docs/security-topics.md: only the agent writes
the alerts, audit and state topics (plus the approver on audit), and each service
writes only its own event topic.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from agent.config import AgentConfig, KafkaConfig, Topics
from tests.deploy.manifests import find, render

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "kafka" / "acls.sh"
STRIMZI = ROOT / "deploy" / "kubernetes" / "kafka" / "kafka-users.yaml"

Acl = tuple[str, str, str, str, str]  # principal, operation, resource type, name, pattern type

AGENT, APPROVER = "User:watchkeeper-agent", "User:watchkeeper-approver"


def _default(cls: type, name: str) -> str:
    return next(f.default for f in dataclasses.fields(cls) if f.name == name)


TOPICS = Topics()
STATE_TOPIC = _default(AgentConfig, "state_topic")
GROUP = _default(KafkaConfig, "group_id")


def script_acls(tmp_path: Path, **env: str) -> set[Acl]:
    """The ACLs acls.sh adds, recorded instead of sent to a broker."""
    log = tmp_path / "calls.jsonl"
    recorder = tmp_path / "kafka-acls.sh"
    recorder.write_text(f"#!{sys.executable}\nimport json, sys\nwith open({str(log)!r}, 'a') as f:\n    f.write(json.dumps(sys.argv[1:]) + '\\n')\n")
    recorder.chmod(0o755)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
    subprocess.run(["bash", str(SCRIPT)], check=True, env={**clean, "KAFKA_ACLS": str(recorder), **env}, timeout=60)
    acls: set[Acl] = set()
    for line in log.read_text().splitlines():
        args = json.loads(line)
        flags = {flag: value for flag, value in zip(args, args[1:], strict=False) if flag.startswith("--")}
        assert "--add" in args and flags["--bootstrap-server"]
        kind = "topic" if "--topic" in flags else "group"
        acls.add((flags["--allow-principal"], flags["--operation"], kind, flags[f"--{kind}"], flags.get("--resource-pattern-type", "literal")))
    return acls


def strimzi_acls() -> set[Acl]:
    acls: set[Acl] = set()
    for user in yaml.safe_load_all(STRIMZI.read_text()):
        assert (user["apiVersion"], user["kind"]) == ("kafka.strimzi.io/v1beta2", "KafkaUser")
        assert user["spec"]["authorization"]["type"] == "simple" and user["spec"]["authentication"]["type"]
        for acl in user["spec"]["authorization"]["acls"]:
            resource = acl["resource"]
            pattern = {"literal": "literal", "prefix": "prefixed"}[resource.get("patternType", "literal")]
            for operation in acl["operations"]:
                acls.add((f"User:{user['metadata']['name']}", operation, resource["type"], resource["name"], pattern))
    return acls


@pytest.fixture(scope="module")
def acls(tmp_path_factory: pytest.TempPathFactory) -> set[Acl]:
    return script_acls(tmp_path_factory.mktemp("acls"))


def writers(acls: set[Acl], topic: str) -> set[str]:
    return {p for p, op, kind, name, _ in acls if kind == "topic" and name == topic and op in ("Write", "All")}


def test_the_script_and_the_strimzi_users_grant_the_same_acls(acls: set[Acl]) -> None:
    assert acls == strimzi_acls()


def test_the_acls_name_exactly_the_agents_topics_and_groups(acls: set[Acl]) -> None:
    topics = {name for _, _, kind, name, _ in acls if kind == "topic"}
    assert topics == {*TOPICS.all(), STATE_TOPIC}
    agent_groups = {(name, pattern) for p, _, kind, name, pattern in acls if kind == "group" and p == AGENT}
    assert agent_groups == {(GROUP, "prefixed")}  # <group>, <group>.notifier, <group>.actions
    for suffix in ("", ".notifier", ".actions"):
        assert f"{GROUP}{suffix}".startswith(GROUP)


def test_only_the_agent_writes_its_own_topics(acls: set[Acl]) -> None:
    assert writers(acls, TOPICS.alerts) == {AGENT}
    assert writers(acls, STATE_TOPIC) == {AGENT}
    assert writers(acls, TOPICS.audit) == {AGENT, APPROVER}
    assert not any(op == "All" or pattern != "literal" for _, op, kind, _, pattern in acls if kind == "topic")


def test_each_service_writes_only_its_own_event_topic(acls: set[Acl]) -> None:
    for topic in TOPICS.sources():  # every event topic: inference, llm, gpu, retrieval, feedback
        (service,) = writers(acls, topic)
        assert service not in (AGENT, APPROVER)
        assert {name for p, op, kind, name, _ in acls if p == service and op == "Write"} == {topic}
        assert {op for p, op, _, _, _ in acls if p == service} == {"Write"}
    approver = {(op, name) for p, op, _, name, _ in acls if p == APPROVER}
    assert approver == {("Read", TOPICS.audit), ("Write", TOPICS.audit)}


def test_the_agent_can_do_its_work(acls: set[Acl]) -> None:
    mine = {(op, name) for p, op, kind, name, _ in acls if p == AGENT and kind == "topic"}
    reads = {*TOPICS.sources(), TOPICS.alerts, TOPICS.audit, STATE_TOPIC}
    writes = {TOPICS.dlq, TOPICS.alerts, TOPICS.audit, TOPICS.retrain, STATE_TOPIC}
    assert {("Read", t) for t in reads} | {("Write", t) for t in writes} <= mine


def test_the_script_follows_the_agents_settings(tmp_path: Path) -> None:
    acls = script_acls(tmp_path, WATCHKEEPER_TOPIC_ALERTS="team-a.alerts", WATCHKEEPER_STATE_TOPIC="team-a.state", WATCHKEEPER_GROUP_ID="team-a")
    assert writers(acls, "team-a.alerts") == {AGENT} and writers(acls, "team-a.state") == {AGENT}
    assert writers(acls, TOPICS.alerts) == set()
    assert (AGENT, "Read", "group", "team-a", "prefixed") in acls


def test_every_agent_of_the_fleet_mounts_the_one_shared_topic_key() -> None:
    deployment = find(render("base"), "Deployment", "watchkeeper")
    pod = deployment["spec"]["template"]["spec"]
    (agent,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in agent["env"]}
    mounts = {m["name"]: m for m in agent["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    path = Path(env["WATCHKEEPER_TOPIC_KEYS_FILE"])
    (name,) = [n for n, m in mounts.items() if path.parent == Path(m["mountPath"])]
    assert mounts[name]["readOnly"] and "subPath" not in mounts[name]
    secret = volumes[name]["secret"]
    assert secret["secretName"] == "watchkeeper-topic-keys" and not secret.get("optional")  # never a per-pod key
    assert secret["defaultMode"] & 0o007 == 0  # not world-readable
