"""Two agents never act on one target at once: a ``coordination.k8s.io/v1`` Lease per target.

The Lease is the same primitive Kubernetes' own leader election uses, so it needs no
extra infrastructure and its holder is visible with ``kubectl get lease``. One Lease per
target key, named ``watchkeeper-<12 hex of sha256(key)>`` (DNS-safe, stable, short).

* acquire: create it; if it exists, take it only when it is ours (renew) or expired
  (``renewTime + leaseDurationSeconds`` in the past, or no holder), by an ``update``
  carrying the resourceVersion just read. Any 409 means another agent won the race:
  return False at once, never wait (the runtime skips with guard ``lease``).
* release: clear the holder if it is still ours; idempotent, and a lost race is fine.

Expiry compares the other holder's ``renewTime`` with this machine's clock, as client-go
does; keep ``ttl_s`` well above the clock skew between agents (the default action
TTL of minutes is).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from datetime import UTC, datetime
from typing import Any

from actions.base import ActionFailed, TargetLock, TransientActionError
from actions.kube import api_status, kube_errors
from actions.kube_target import KubeScope, KubeTarget

__all__ = ["KubeLeaseLock", "lease_name"]


def lease_name(key: str) -> str:
    """The Lease's name for a target key: ``watchkeeper-`` and 12 hex digits of its sha256.

    >>> lease_name("deployment/shop/ranker") == lease_name("deployment/shop/ranker") != lease_name("x")
    True
    >>> len(lease_name("deployment/shop/ranker"))
    24
    """
    return "watchkeeper-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def _micro_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


class KubeLeaseLock(TargetLock):
    """A :class:`~actions.base.TargetLock` over Leases in one namespace.

    Parameters
    ----------
    api_client:
        An official-client ``ApiClient`` allowed get/create/update on leases there.
    namespace:
        Where the Leases live (the agent's own namespace).
    """

    def __init__(self, api_client: Any, namespace: str) -> None:
        self.api_client = api_client
        self.namespace = namespace
        # The agent's own namespace, fixed at start (never from a label); checked like any
        # target, and the only namespace this lock's requests can reach.
        self._where = KubeScope(api_client, {namespace}).namespace(namespace, "lease namespace")

    def _lease(self, key: str) -> KubeTarget:
        return self._where.object("lease", lease_name(key))

    async def acquire(self, key: str, holder: str, ttl_s: float) -> bool:
        return await asyncio.to_thread(self._acquire, key, holder, ttl_s)

    async def release(self, key: str, holder: str) -> None:
        await asyncio.to_thread(self._release, key, holder)

    def holder(self, key: str) -> str | None:
        """Who holds the Lease for ``key`` now (expired or not), for diagnostics and tests."""
        lease = self._read(self._lease(key))
        return None if lease is None else lease.spec.holder_identity

    def _api(self, lease: KubeTarget) -> Any:
        from kubernetes import client

        return client.CoordinationV1Api(lease.api_client())

    def _read(self, lease: KubeTarget) -> Any:
        try:
            with kube_errors(f"read lease {lease.ns}/{lease.name}"):
                return self._api(lease).read_namespaced_lease(lease.name, lease.ns)
        except ActionFailed as error:
            if api_status(error) == 404:
                return None
            raise

    def _acquire(self, key: str, holder: str, ttl_s: float) -> bool:
        where = self._lease(key)
        name = where.name
        now = datetime.now(UTC)
        duration = max(1, math.ceil(ttl_s))
        lease = self._read(where)
        try:
            if lease is None:
                body = {
                    "metadata": {
                        "name": name,
                        "labels": {"app.kubernetes.io/managed-by": "watchkeeper"},
                        "annotations": {"watchkeeper.io/target": key},
                    },
                    "spec": {
                        "holderIdentity": holder,
                        "leaseDurationSeconds": duration,
                        "acquireTime": _micro_time(now),
                        "renewTime": _micro_time(now),
                        "leaseTransitions": 0,
                    },
                }
                with kube_errors(f"create lease {where.ns}/{name}"):
                    self._api(where).create_namespaced_lease(where.ns, body)
                return True
            spec = lease.spec
            current = spec.holder_identity or ""
            renewed = _parse_time(spec.renew_time) or _parse_time(spec.acquire_time)
            held_for = float(spec.lease_duration_seconds or 0)
            live = bool(current) and renewed is not None and (now - renewed).total_seconds() < held_for
            if live and current != holder:
                return False
            transitions = int(spec.lease_transitions or 0) + (0 if current == holder else 1)
            acquired = now if current != holder else (_parse_time(spec.acquire_time) or now)
            self._replace(
                where,
                lease,
                key,
                {
                    "holderIdentity": holder,
                    "leaseDurationSeconds": duration,
                    "acquireTime": _micro_time(acquired),
                    "renewTime": _micro_time(now),
                    "leaseTransitions": transitions,
                },
            )
            return True
        except TransientActionError as error:
            if api_status(error) == 409:
                return False  # another agent created or updated it between our read and write
            raise

    def _replace(self, where: KubeTarget, lease: Any, key: str, spec: dict[str, Any]) -> None:
        """Write ``spec`` over the Lease just read, guarded by its resourceVersion (409 if it moved)."""
        name = where.name
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": name,
                "resourceVersion": lease.metadata.resource_version,
                "labels": lease.metadata.labels or {},
                "annotations": {**(lease.metadata.annotations or {}), "watchkeeper.io/target": key},
            },
            "spec": spec,
        }
        with kube_errors(f"update lease {where.ns}/{name}"):
            self._api(where).replace_namespaced_lease(name, where.ns, body)

    def _release(self, key: str, holder: str) -> None:
        where = self._lease(key)
        for _ in range(3):
            lease = self._read(where)
            if lease is None or (lease.spec.holder_identity or "") != holder:
                return
            try:
                spec = {
                    "holderIdentity": None,
                    "leaseDurationSeconds": lease.spec.lease_duration_seconds,
                    "leaseTransitions": int(lease.spec.lease_transitions or 0),
                }
                self._replace(where, lease, key, spec)
                return
            except TransientActionError as error:
                if api_status(error) != 409:
                    raise
