"""Emitter settings from ``WATCHKEEPER_*`` environment variables (the agent's names).

A service and the agent read the same variables, so one ConfigMap/Secret serves both:
``WATCHKEEPER_KAFKA_BOOTSTRAP``, ``WATCHKEEPER_TOPIC_INFERENCE|_LLM|_GPU|_RETRIEVAL|_FEEDBACK`` and the Kafka
security settings ``WATCHKEEPER_KAFKA_SECURITY_PROTOCOL``, ``_SASL_MECHANISM``,
``_SASL_USERNAME``, ``_SASL_PASSWORD`` (or ``_SASL_PASSWORD_FILE``), ``_SSL_CAFILE``,
``_SSL_CERTFILE``, ``_SSL_KEYFILE``.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_TOPICS", "kafka_kwargs_from_env", "topics_from_env"]

DEFAULT_TOPICS: dict[str, str] = {
    "inference": "watchkeeper.inference",
    "llm": "watchkeeper.llm",
    "gpu": "watchkeeper.gpu",
    "retrieval": "watchkeeper.retrieval",
    "feedback": "watchkeeper.feedback",
}
_P = "WATCHKEEPER_KAFKA_"


def topics_from_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Event type -> topic, ``WATCHKEEPER_TOPIC_<TYPE>`` overriding the defaults."""
    env = os.environ if env is None else env
    return {kind: env.get(f"WATCHKEEPER_TOPIC_{kind.upper()}") or topic for kind, topic in DEFAULT_TOPICS.items()}


def _secret(env: Mapping[str, str], name: str) -> str | None:
    if env.get(name):
        return env[name]
    path = env.get(name + "_FILE")
    return Path(path).read_text(encoding="utf-8").strip() if path else None


def kafka_kwargs_from_env(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """aiokafka producer keyword arguments for the configured security protocol.

    Raises ``ValueError`` naming the variable when a value is not one of the allowed ones.
    """
    env = os.environ if env is None else env
    protocol = env.get(_P + "SECURITY_PROTOCOL", "PLAINTEXT").upper()
    if protocol not in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"):
        raise ValueError(f"{_P}SECURITY_PROTOCOL: {protocol!r} is not PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")
    kwargs: dict[str, Any] = {"security_protocol": protocol}
    if protocol.endswith("SSL"):
        context = ssl.create_default_context(cafile=env.get(_P + "SSL_CAFILE") or None)
        if env.get(_P + "SSL_CERTFILE"):
            context.load_cert_chain(env[_P + "SSL_CERTFILE"], env.get(_P + "SSL_KEYFILE") or None)
        kwargs["ssl_context"] = context
    if protocol.startswith("SASL"):
        mechanism = env.get(_P + "SASL_MECHANISM", "PLAIN").upper()
        if mechanism not in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
            raise ValueError(f"{_P}SASL_MECHANISM: {mechanism!r} is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
        username, password = env.get(_P + "SASL_USERNAME"), _secret(env, _P + "SASL_PASSWORD")
        if not username or password is None:
            raise ValueError(f"{_P}SASL_USERNAME and {_P}SASL_PASSWORD (or _FILE) are required for {protocol}")
        kwargs.update(sasl_mechanism=mechanism, sasl_plain_username=username, sasl_plain_password=password)
    return kwargs
