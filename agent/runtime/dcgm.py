"""NVIDIA DCGM exporter series, read from Prometheus, turned into ``gpu`` events.

For clusters whose GPUs are already scraped by Prometheus (dcgm-exporter), this poller
is the producer of the ``gpu`` topic: one instant query per poll fetches every DCGM
series the agent needs, :func:`events_from_dcgm` (pure, no I/O) maps them onto the
wire contract, one event per GPU (or MIG instance), and :meth:`DcgmPoller.run`
publishes each keyed by ``node``.

Mapping (dcgm-exporter's default counters):

=================================  ============================================
``util_pct``                       ``DCGM_FI_DEV_GPU_UTIL`` (percent); under MIG,
                                   where it is absent, ``DCGM_FI_PROF_GR_ENGINE_ACTIVE``
                                   (a 0-1 ratio) times 100
``mem_used_bytes``                 ``DCGM_FI_DEV_FB_USED`` (MiB) x 2^20
``mem_total_bytes``                (``FB_USED`` + ``DCGM_FI_DEV_FB_FREE``) (MiB) x 2^20
``temp_c``                         ``DCGM_FI_DEV_GPU_TEMP``
``power_w``                        ``DCGM_FI_DEV_POWER_USAGE``
``xid_errors``                     ``DCGM_FI_DEV_XID_ERRORS`` (the last XID code);
                                   None when the series is absent
``node``                           the first of the labels ``node``, ``Hostname``,
                                   ``instance`` (without its port)
``gpu``                            the ``gpu`` index; ``gpu/GPU_I_ID`` for a MIG instance
``pod``                            ``exported_pod`` (the workload's, when Prometheus
                                   renamed it), else ``pod``
=================================  ============================================

A MIG instance that lacks a device-wide value (temperature, power, XID) takes its
parent GPU's. A GPU whose required series are missing is skipped, with the reason.
An instant query returns each series' latest sample of the last 5 minutes (Prometheus'
lookback), stamped with the query's evaluation time, which becomes the event's ``ts``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_api_client import PrometheusApiClientException
from pydantic import ValidationError
from requests import RequestException

from agent.logs import get_logger
from agent.model import EVENT_ADAPTER

__all__ = ["DCGM_METRICS", "DcgmPoller", "DcgmResult", "dcgm_query", "events_from_dcgm"]

_log = get_logger(__name__)

UTIL = "DCGM_FI_DEV_GPU_UTIL"
GR_ENGINE_ACTIVE = "DCGM_FI_PROF_GR_ENGINE_ACTIVE"
FB_USED = "DCGM_FI_DEV_FB_USED"
FB_FREE = "DCGM_FI_DEV_FB_FREE"
TEMP = "DCGM_FI_DEV_GPU_TEMP"
POWER = "DCGM_FI_DEV_POWER_USAGE"
XID = "DCGM_FI_DEV_XID_ERRORS"
DCGM_METRICS: tuple[str, ...] = (UTIL, GR_ENGINE_ACTIVE, FB_USED, FB_FREE, TEMP, POWER, XID)
_DEVICE_WIDE = (TEMP, POWER, XID)  # a MIG instance may take these from its parent GPU
NODE_LABELS: tuple[str, ...] = ("node", "Hostname", "instance")
_MIB = 1 << 20
#: event label <- first DCGM/Prometheus label present
_EVENT_LABELS: dict[str, tuple[str, ...]] = {
    "uuid": ("UUID",),
    "model_name": ("modelName",),
    "device": ("device",),
    "namespace": ("exported_namespace", "namespace"),
    "container": ("exported_container", "container"),
    "mig_profile": ("GPU_I_PROFILE",),
}

Publish = Callable[[str, dict[str, Any]], Awaitable[Any]]


def dcgm_query(match: str = "") -> str:
    """The one PromQL selector fetching every series the mapping reads.

    ``match`` adds label matchers, e.g. ``job="dcgm", cluster="eu-1"``.
    """
    names = "|".join(DCGM_METRICS)
    extra = f", {match.strip().strip(',')}" if match.strip() else ""
    return f'{{__name__=~"{names}"{extra}}}'


@dataclass(frozen=True)
class DcgmResult:
    """The events one query result maps to, and why any GPU was left out."""

    events: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def events_from_dcgm(result: Iterable[Mapping[str, Any]], *, node_labels: tuple[str, ...] = NODE_LABELS) -> DcgmResult:
    """Map an instant-query result (``custom_query``'s list of ``{metric, value}``) to events.

    Every event returned has passed ``EVENT_ADAPTER`` validation; each GPU left out
    is named in ``skipped`` with the reason.
    """
    gpus: dict[tuple[str, str, str], _Gpu] = {}
    skipped: list[str] = []
    for sample in result:
        labels = sample.get("metric") or {}
        name = labels.get("__name__", "")
        try:
            ts, value = float(sample["value"][0]), float(sample["value"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            skipped.append(f"{name or 'a series'} {dict(labels)}: no readable value")
            continue
        node = _node(labels, node_labels)
        index = labels.get("gpu", "")
        if not node or not index:
            skipped.append(f"{name} {dict(labels)}: no {'node label (' + ', '.join(node_labels) + ')' if not node else 'gpu label'}")
            continue
        key = (node, index, labels.get("GPU_I_ID", ""))
        gpu = gpus.get(key)
        if gpu is None:
            gpu = gpus[key] = _Gpu(key, labels)
        if math.isfinite(value) and (name not in gpu.values or ts >= gpu.times[name]):
            gpu.values[name] = value
            gpu.times[name] = ts
    events: list[dict[str, Any]] = []
    mig_parents = {k[:2] for k in gpus if k[2]}
    for key, gpu in gpus.items():
        parent = gpus.get((key[0], key[1], "")) if key[2] else None
        if parent is not None:
            for name in _DEVICE_WIDE:
                if name not in gpu.values and name in parent.values:
                    gpu.values[name] = parent.values[name]
        event, reason = gpu.event()
        if event is not None:
            events.append(event)
        elif key[2] or key[:2] not in mig_parents:  # a MIG parent may carry only device-wide values
            skipped.append(reason)
    return DcgmResult(events, skipped)


class _Gpu:
    """The latest value of each DCGM series of one GPU or MIG instance."""

    def __init__(self, key: tuple[str, str, str], labels: Mapping[str, str]) -> None:
        self.key = key
        self.labels = labels
        self.values: dict[str, float] = {}
        self.times: dict[str, float] = {}

    def event(self) -> tuple[dict[str, Any] | None, str]:
        node, index, instance = self.key
        where = f"node {node} gpu {index}" + (f" MIG instance {instance}" if instance else "")
        v = self.values
        util = v.get(UTIL)
        if util is None and GR_ENGINE_ACTIVE in v:
            util = v[GR_ENGINE_ACTIVE] * 100.0
        missing = [n for n in (FB_USED, FB_FREE, TEMP, POWER) if n not in v]
        if util is None:
            missing.insert(0, f"{UTIL} (or {GR_ENGINE_ACTIVE})")
        if missing:
            return None, f"{where}: missing {', '.join(missing)}"
        labels = {"source": "dcgm"}
        for out, names in _EVENT_LABELS.items():
            found = _first(self.labels, names)
            if found:
                labels[out] = found
        if instance:
            labels["mig_instance"] = instance
        event = {
            "type": "gpu",
            "ts": max(self.times.values()),
            "node": node,
            "gpu": f"{index}/{instance}" if instance else index,
            "pod": _first(self.labels, ("exported_pod", "pod")) or None,
            "util_pct": min(100.0, max(0.0, util)),
            "mem_used_bytes": round(v[FB_USED] * _MIB),
            "mem_total_bytes": round((v[FB_USED] + v[FB_FREE]) * _MIB),
            "temp_c": v[TEMP],
            "power_w": v[POWER],
            "xid_errors": int(v[XID]) if XID in v else None,
            "labels": labels,
        }
        try:
            EVENT_ADAPTER.validate_python(event)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = first["loc"][1:] if first["loc"][:1] == ("gpu",) else first["loc"]  # drop the union's tag
            return None, f"{where}: invalid gpu event: {'.'.join(map(str, loc))}: {first['msg']}"
        return event, ""


def _first(labels: Mapping[str, str], names: Iterable[str]) -> str:
    for name in names:
        value = labels.get(name)
        if value:
            return str(value)
    return ""


def _node(labels: Mapping[str, str], names: tuple[str, ...]) -> str:
    for name in names:
        value = labels.get(name)
        if value:
            if name == "instance":
                host, sep, port = value.rpartition(":")
                if sep and port.isdigit():
                    value = host.strip("[]")
            return str(value)
    return ""


class DcgmPoller:
    """Polls Prometheus for DCGM series and publishes ``gpu`` events keyed by node.

    ``client`` is anything with prometheus-api-client's ``custom_query(query)``; by
    default a ``PrometheusConnect`` on ``url``. That client is synchronous, so each
    query runs in a worker thread.
    """

    def __init__(
        self,
        url: str = "http://127.0.0.1:9090",
        *,
        match: str = "",
        node_labels: tuple[str, ...] = NODE_LABELS,
        timeout_s: float = 10.0,
        headers: Mapping[str, str] | None = None,
        disable_ssl: bool = False,
        client: Any = None,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
        if not node_labels:
            raise ValueError("node_labels must name at least one label")
        if client is None:
            from prometheus_api_client import PrometheusConnect

            client = PrometheusConnect(url=url, headers=dict(headers or {}) or None, disable_ssl=disable_ssl, timeout=timeout_s)
        self.url = url
        self.query = dcgm_query(match)
        self.node_labels = tuple(node_labels)
        self._client = client
        self.polls = 0
        self.failures = 0
        self.published = 0
        self.last_skipped: list[str] = []

    async def poll_once(self) -> list[dict[str, Any]]:
        """One query, mapped to validated ``gpu`` event dicts; query errors propagate."""
        result = await asyncio.to_thread(self._client.custom_query, self.query)
        mapped = events_from_dcgm(result, node_labels=self.node_labels)
        self.polls += 1
        self.last_skipped = mapped.skipped
        for reason in mapped.skipped:
            _log.warning("dcgm gpu skipped", reason=reason, prometheus=self.url)
        return mapped.events

    async def run(self, publish: Publish, interval_s: float = 15.0, stop: asyncio.Event | None = None) -> None:
        """Poll every ``interval_s`` and ``await publish(node, event)`` for each event.

        A failed query (Prometheus down, timeout, HTTP error) is logged and counted,
        and the next poll comes at the next interval; a failing ``publish`` propagates
        (the caller owns the producer). Returns when ``stop`` is set.
        """
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s!r}")
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            started = loop.time()
            try:
                events = await self.poll_once()
            except (RequestException, PrometheusApiClientException, ValueError, KeyError) as exc:
                self.failures += 1
                _log.warning("dcgm poll failed", prometheus=self.url, error=f"{type(exc).__name__}: {exc}")
                events = []
            for event in events:
                await publish(event["node"], event)
                self.published += 1
            remaining = interval_s - (loop.time() - started)
            try:
                await asyncio.wait_for(stop.wait(), timeout=max(0.0, remaining))
            except TimeoutError:
                pass
