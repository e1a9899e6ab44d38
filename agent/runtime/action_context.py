"""The ActionContext the runtime gives every action: clients and settings built once from config.

Actions never read the environment or build clients (``actions/base.py``); this module
does it for them: a Kubernetes API client from ``WATCHKEEPER_KUBECONFIG`` (or the pod's
service account when running in a cluster), the MLflow tracking URI, an httpx client,
a publish function on the agent's broker, the namespace allow-list, and the lock that
keeps two agents off one target (a Kubernetes Lease when there is a cluster, else an
in-process lock).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from actions.base import ActionContext, TargetLock, TargetRefused
from actions.local_lock import LocalLock
from agent.config import AgentConfig
from agent.errors import ConfigError
from agent.logs import get_logger

__all__ = ["agent_identity", "build_action_context", "kube_api_client", "lease_namespace"]

_log = get_logger(__name__)

_IN_CLUSTER = "KUBERNETES_SERVICE_HOST"
_SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

Publish = Callable[[str, bytes, bytes], Awaitable[None]]


def agent_identity(config: AgentConfig, env: Mapping[str, str] | None = None) -> str:
    """This agent's name in audit records, marks and lease holders: the setting, else the hostname."""
    env = os.environ if env is None else env
    return config.agent_id or env.get("WATCHKEEPER_AGENT_ID") or socket.gethostname()


def kube_api_client(kubeconfig: str | None, env: Mapping[str, str] | None = None) -> Any:
    """A ``kubernetes.client.ApiClient``: from ``kubeconfig``, else in-cluster when in a pod, else None."""
    env = os.environ if env is None else env
    if not kubeconfig and not env.get(_IN_CLUSTER):
        return None
    from kubernetes import client, config

    try:
        if kubeconfig:
            configuration = client.Configuration()
            config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        else:
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)
    except (config.ConfigException, OSError) as exc:
        raise ConfigError(f"cannot load Kubernetes configuration: {exc}", "WATCHKEEPER_KUBECONFIG") from None
    return client.ApiClient(configuration)


def _target_lock(api_client: Any, kubeconfig: str | None) -> TargetLock:
    """A Lease per target when there is a cluster; else the in-process lock."""
    if api_client is None:
        return LocalLock()
    try:
        from actions.lease import KubeLeaseLock
    except ImportError:
        _log.warning("actions.lease is not available; two agents could act on one target at once")
        return LocalLock()
    namespace = lease_namespace(kubeconfig)
    try:
        return KubeLeaseLock(api_client, namespace)  # type: ignore[no-any-return]
    except TargetRefused as exc:  # the namespace is checked like any target
        raise ConfigError(f"lease namespace: {exc}", "WATCHKEEPER_KUBECONFIG") from None


def lease_namespace(kubeconfig: str | None) -> str:
    """Where the Leases live: the agent's own namespace (the kubeconfig context's, or the pod's)."""
    if kubeconfig:
        from kubernetes import config

        try:
            _, active = config.list_kube_config_contexts(config_file=kubeconfig)
        except (config.ConfigException, OSError):
            return "default"
        return str((active or {}).get("context", {}).get("namespace") or "default")
    try:
        with open(_SERVICE_ACCOUNT_NAMESPACE, encoding="utf-8") as fh:
            return fh.read().strip() or "default"
    except OSError:
        return "default"


def build_action_context(
    config: AgentConfig,
    publish: Publish,
    *,
    http: Any = None,
    env: Mapping[str, str] | None = None,
    lock: TargetLock | None = None,
) -> ActionContext:
    """The context for this agent's actions (``http``: an ``httpx.AsyncClient`` the caller closes)."""
    env = os.environ if env is None else env
    kubeconfig = config.kubeconfig or env.get("WATCHKEEPER_KUBECONFIG")
    api_client = kube_api_client(kubeconfig, env)
    mlflow_uri = config.mlflow_tracking_uri or env.get("WATCHKEEPER_MLFLOW_TRACKING_URI") or env.get("MLFLOW_TRACKING_URI")
    return ActionContext(
        kube_api_client=api_client,
        mlflow_tracking_uri=mlflow_uri or None,
        publish=publish,
        http=http,
        namespaces=frozenset(config.actions_namespaces) if config.actions_namespaces is not None else None,
        lock=lock or _target_lock(api_client, kubeconfig),
        agent_id=agent_identity(config, env),
        extra={"env": env, "retrain_topic": config.topics.retrain, "audit_topic": config.topics.audit},
    )
