"""Typed, validated settings, parsed once; every component gets only its own part.

Endpoints and secrets come from environment variables (or files they point at), never
from code: the CLI maps ``WATCHKEEPER_*`` variables and flags onto these objects, and a
bad value fails with the variable's name and what a good one looks like.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from agent.errors import ConfigError

__all__ = ["AgentConfig", "KafkaConfig", "Topics", "kafka_security_from_env", "parse_addr", "parse_urls"]

_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class Topics:
    """Kafka topic names; every one is configurable."""

    inference: str = "watchkeeper.inference"
    llm: str = "watchkeeper.llm"
    gpu: str = "watchkeeper.gpu"
    dlq: str = "watchkeeper.dlq"
    alerts: str = "watchkeeper.alerts"
    audit: str = "watchkeeper.audit"
    retrain: str = "watchkeeper.retrain"
    retrieval: str = "watchkeeper.retrieval"
    feedback: str = "watchkeeper.feedback"

    def all(self) -> tuple[str, ...]:
        return (self.inference, self.llm, self.gpu, self.retrieval, self.feedback, self.dlq, self.alerts, self.audit, self.retrain)

    def sources(self) -> dict[str, str]:
        """Topic -> source name, for the ingestion subscriber."""
        return {self.inference: "inference", self.llm: "llm", self.gpu: "gpu", self.retrieval: "retrieval", self.feedback: "feedback"}

    def __post_init__(self) -> None:
        names = list(self.all())
        if any(not n for n in names):
            raise ConfigError("topic names must not be empty")
        if len(set(names)) != len(names):
            raise ConfigError(f"topic names must be distinct, got {names}")


@dataclass(frozen=True)
class KafkaConfig:
    """Where the broker is and how to talk to it."""

    bootstrap: str
    group_id: str = "watchkeeper"
    security: Any = None  # a faststream.security object, or None for PLAINTEXT
    batch_max_records: int = 1000
    batch_timeout_ms: int = 200
    # how long the broker may hold a fetch when no data is waiting: it bounds the delay
    # from a produced event to the agent (aiokafka's 500 ms default is a third of the
    # p95 page latency); with data flowing, fetches return at once whatever its value
    fetch_max_wait_ms: int = 100
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000

    def __post_init__(self) -> None:
        if not self.bootstrap:
            raise ConfigError("Kafka bootstrap servers are empty", "WATCHKEEPER_KAFKA_BOOTSTRAP")
        if self.batch_max_records < 1:
            raise ConfigError("batch size must be >= 1", "WATCHKEEPER_BATCH_MAX_RECORDS")


@dataclass(frozen=True)
class SeriesLimits:
    """What producers, who choose every label value, can make the agent remember.

    ``max_active_alerts``: pending plus firing alerts held; at the bound new alerts are
    refused and counted, the existing ones keep their course. ``proven_s``: event time a
    series must span (first to latest event) before no new series may take its place.
    ``retain_s``: how long a proven series may stay silent and keep its place. ``shares``:
    fraction of ``max_series`` per source (the others split the rest equally). See
    docs/security-series.md.
    """

    max_active_alerts: int = 10_000
    proven_s: float = 300.0
    retain_s: float = 86_400.0
    shares: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.max_active_alerts < 1:
            raise ConfigError("max_active_alerts must be >= 1", "WATCHKEEPER_MAX_ACTIVE_ALERTS")
        if not self.proven_s >= 0:
            raise ConfigError("series_proven_s must be >= 0", "WATCHKEEPER_SERIES_PROVEN_S")
        if not self.retain_s > 0:
            raise ConfigError("series_retain_s must be > 0", "WATCHKEEPER_SERIES_RETAIN_S")
        for source, share in self.shares.items():
            if not 0 < share <= 1:
                raise ConfigError(f"the series share of {source!r} must be in (0, 1], got {share}", "WATCHKEEPER_SERIES_SHARES")
        if sum(self.shares.values()) > 1 + 1e-9:
            raise ConfigError("series shares add up to more than 1", "WATCHKEEPER_SERIES_SHARES")


@dataclass(frozen=True)
class AgentConfig:
    """Everything ``watchkeeper run`` needs, validated."""

    kafka: KafkaConfig
    rules: tuple[str, ...]
    topics: Topics = field(default_factory=Topics)
    alertmanager_urls: tuple[str, ...] = ()
    alertmanager_headers: Mapping[str, str] = field(default_factory=dict)
    http_addr: str = "0.0.0.0:9464"
    external_url: str = ""
    max_event_bytes: int = 256 * 1024
    max_series: int = 100_000
    staleness_s: float = 300.0
    max_lateness_s: float = 600.0
    max_future_s: float = 300.0
    resend_interval_s: float = 60.0
    idle_advance_s: float = 5.0
    reload_interval_s: float = 2.0
    processed_log: str | None = None
    create_topics: int = 0
    prices_file: str | None = None
    report_dir: str = "watchkeeper-reports"
    # remediation (issue 4): the mode ceiling, the fleet budget, where actions may act
    actions_mode: str = "dry-run"
    actions_max_per_hour: int = 20
    actions_namespaces: tuple[str, ...] | None = None  # None: any namespace (RBAC still applies)
    actions_backoff_s: float = 1.0  # first retry delay of a failed action; doubles per attempt
    actions_approve_token: str | None = None  # bearer token POST /actions/{id}/approve requires
    kubeconfig: str | None = None  # None: in-cluster config when running in a pod, else no Kubernetes
    mlflow_tracking_uri: str | None = None
    agent_id: str = ""  # "": the hostname (the pod name in Kubernetes)
    # fleet mode (issue 7): per-partition state checkpointed to a compacted topic
    checkpoints: bool = True
    state_topic: str = "watchkeeper.state"
    checkpoint_interval_s: float = 10.0
    lag_warn_records: int = 10_000
    # issue 12: series admission and the bound on active alerts
    series_limits: SeriesLimits = field(default_factory=SeriesLimits)
    # HTTP trust boundary (issue 12): per-approver tokens, drift report retention
    approvers_file: str | None = None  # name:token lines or a YAML mapping (runtime/approvers.py)
    report_max_count: int = 100  # drift reports kept on disk; the oldest go first
    report_max_bytes: int = 512 * 1024 * 1024  # and their total size (one is ~4 MB)
    # authenticated internal topics (issue 12): the key file that signs and verifies records on
    # the alerts, audit and state topics; None: $XDG_STATE_HOME/watchkeeper/topic-keys, created on first start
    topic_keys_file: str | None = None
    # issue 12 (docs/security-records.md): event time is trusted only this close to the
    # record's Kafka timestamp (0: trust it as sent, for replays of history), and a
    # partition whose batch failed this many times in a row is reported stalled
    max_event_skew_s: float = 10.0
    stall_batches: int = 5

    def __post_init__(self) -> None:
        if self.actions_mode not in ("dry-run", "approve", "enforce"):
            raise ConfigError(f"{self.actions_mode!r} is not one of dry-run, approve, enforce", "WATCHKEEPER_ACTIONS_MODE")
        if self.actions_max_per_hour < 0:
            raise ConfigError("the fleet action budget must be >= 0", "WATCHKEEPER_ACTIONS_MAX_PER_HOUR")
        if self.actions_backoff_s < 0:
            raise ConfigError("actions_backoff_s must be >= 0")
        if self.create_topics < 0:
            raise ConfigError("create_topics must be >= 0 (0 leaves topics to the operator)", "WATCHKEEPER_CREATE_TOPICS")
        if not self.rules:
            raise ConfigError("no rule files given", "WATCHKEEPER_RULES")
        parse_addr(self.http_addr)
        for name in ("max_event_bytes", "max_series"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")
        if self.lag_warn_records < 0:
            raise ConfigError("lag_warn_records must be >= 0", "WATCHKEEPER_LAG_WARN_RECORDS")
        if self.checkpoints and (not self.state_topic or self.state_topic in self.topics.all()):
            raise ConfigError("the state topic must be named and differ from every other topic", "WATCHKEEPER_STATE_TOPIC")
        for name in ("staleness_s", "resend_interval_s", "idle_advance_s", "reload_interval_s", "checkpoint_interval_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0")
        if self.report_max_count < 1:
            raise ConfigError("keep at least one drift report", "WATCHKEEPER_REPORT_MAX_COUNT")
        if self.report_max_bytes < 1:
            raise ConfigError("the drift report budget must be >= 1 byte", "WATCHKEEPER_REPORT_MAX_BYTES")
        if not 0 <= self.max_event_skew_s < float("inf"):
            raise ConfigError("max_event_skew_s must be >= 0 (0 trusts event time as sent)", "WATCHKEEPER_MAX_EVENT_SKEW_S")
        if self.stall_batches < 1:
            raise ConfigError("stall_batches must be >= 1", "WATCHKEEPER_STALL_BATCHES")


def parse_addr(addr: str) -> tuple[str, int]:
    """``host:port`` (``:9464`` means all interfaces) to a pair."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{addr!r} is not host:port (e.g. 0.0.0.0:9464)", "WATCHKEEPER_HTTP_ADDR")
    return host.strip("[]") or "0.0.0.0", int(port)


def parse_urls(text: str | None, where: str) -> tuple[str, ...]:
    """Comma-separated http(s) URLs, e.g. an Alertmanager HA pair."""
    if not text:
        return ()
    urls = tuple(u.strip().rstrip("/") for u in text.split(",") if u.strip())
    for url in urls:
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigError(f"{url!r} is not an http(s) URL", where)
    return urls


def _secret(env: Mapping[str, str], name: str) -> str | None:
    """``NAME`` or the contents of the file named by ``NAME_FILE`` (Kubernetes secrets)."""
    if env.get(name):
        return env[name]
    path = env.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}", f"{name}_FILE") from None
    return None


def kafka_security_from_env(env: Mapping[str, str] | None = None) -> Any:
    """FastStream security settings from ``WATCHKEEPER_KAFKA_*`` variables.

    ``SECURITY_PROTOCOL`` (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL), ``SASL_MECHANISM``
    (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512), ``SASL_USERNAME``, ``SASL_PASSWORD`` (or
    ``SASL_PASSWORD_FILE``), ``SSL_CAFILE``, ``SSL_CERTFILE``, ``SSL_KEYFILE``.
    """
    from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

    env = os.environ if env is None else env
    prefix = "WATCHKEEPER_KAFKA_"
    protocol = env.get(prefix + "SECURITY_PROTOCOL", "PLAINTEXT").upper()
    if protocol not in _SECURITY_PROTOCOLS:
        raise ConfigError(f"{protocol!r} is not one of {', '.join(_SECURITY_PROTOCOLS)}", prefix + "SECURITY_PROTOCOL")
    if protocol == "PLAINTEXT":
        return None
    context = None
    if protocol.endswith("SSL"):
        try:
            context = ssl.create_default_context(cafile=env.get(prefix + "SSL_CAFILE") or None)
            if env.get(prefix + "SSL_CERTFILE"):
                context.load_cert_chain(env[prefix + "SSL_CERTFILE"], env.get(prefix + "SSL_KEYFILE") or None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load TLS files: {exc}", prefix + "SSL_CAFILE") from None
    if protocol == "SSL":
        return BaseSecurity(ssl_context=context, use_ssl=True)
    mechanism = env.get(prefix + "SASL_MECHANISM", "PLAIN").upper()
    if mechanism not in _SASL_MECHANISMS:
        raise ConfigError(f"{mechanism!r} is not one of {', '.join(_SASL_MECHANISMS)}", prefix + "SASL_MECHANISM")
    username = env.get(prefix + "SASL_USERNAME")
    password = _secret(env, prefix + "SASL_PASSWORD")
    if not username or password is None:
        raise ConfigError("SASL needs a username and a password", prefix + "SASL_USERNAME")
    cls = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}[mechanism]
    return cls(username=username, password=password, ssl_context=context, use_ssl=protocol == "SASL_SSL")


def parse_shares(text: str | None) -> dict[str, float]:
    """``inference=0.5,llm=0.25,gpu=0.25`` to a mapping; empty: equal shares."""
    out: dict[str, float] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        source, sep, value = part.partition("=")
        try:
            share = float(value)
        except ValueError:
            share = float("nan")
        if not sep or not source.strip() or share != share:
            raise ConfigError(f"{part.strip()!r} is not source=fraction (e.g. inference=0.5)", "WATCHKEEPER_SERIES_SHARES")
        out[source.strip()] = share
    return out
