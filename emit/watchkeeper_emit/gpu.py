"""GPU samples from NVML (``nvidia-ml-py``) as ``gpu`` events, one per device per poll.

For nodes without the DCGM exporter. (Clusters that already scrape DCGM into
Prometheus use the agent's DCGM poller instead: ``watchkeeper dcgm-poll``.) Without a
GPU, a driver or the ``nvidia-ml-py`` package, :func:`open_nvml` raises
:class:`GpuUnavailable` whose message says which, and the CLI exits 2 with it.

XIDs: NVML reports critical XID errors as events; the sampler registers for them on
every device that supports it and reports, in each sample, the last XID code seen
since the previous sample (0 when none), so an XID pages once and then resolves
instead of holding the last code forever. A field a device does not support
(power on some boards) reads 0; a device whose required readings fail is skipped, with
the reason in :attr:`NvmlSampler.skipped`.
"""

from __future__ import annotations

import socket
import time
from types import ModuleType
from typing import Any

from .events import gpu_event

__all__ = ["GpuUnavailable", "NvmlSampler", "open_nvml"]


class GpuUnavailable(RuntimeError):
    """No usable NVIDIA GPU here; the message says why and what to do."""


def open_nvml(pynvml: ModuleType | None = None) -> ModuleType:
    """Import and initialise NVML, or raise :class:`GpuUnavailable` with the reason."""
    if pynvml is None:
        try:
            import pynvml as imported
        except ImportError:
            raise GpuUnavailable(
                "the nvidia-ml-py package is not installed: pip install 'watchkeeper-emit[nvml]'"
            ) from None
        pynvml = imported
    try:
        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
    except pynvml.NVMLError as exc:
        raise GpuUnavailable(
            f"no NVIDIA GPU is usable here (NVML: {exc}); on a GPU node, check the driver "
            "(nvidia-smi) and that the container runs with the NVIDIA runtime"
        ) from None
    if count == 0:
        raise GpuUnavailable("NVML found no GPU on this machine")
    return pynvml


class NvmlSampler:
    """Reads every GPU of this node through an initialised NVML module.

    Parameters
    ----------
    nvml
        The module from :func:`open_nvml` (tests pass a fake with the same functions).
    node
        The node name (Kafka key); default this host's name (set it to the Kubernetes
        node name from the downward API).
    pod
        The pod using the GPUs, when the sampler runs as its sidecar.
    labels
        Static labels on every event.
    """

    def __init__(self, nvml: ModuleType, *, node: str | None = None, pod: str | None = None,
                 labels: dict[str, str] | None = None) -> None:
        self.nvml = nvml
        self.node = node or socket.gethostname()
        self.pod = pod
        self.labels = dict(labels or {})
        self.skipped: list[str] = []
        self._handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
        self._last_xid = [0] * len(self._handles)
        self._events = self._register_xid_events()

    def _register_xid_events(self) -> Any:
        nvml = self.nvml
        try:
            event_set = nvml.nvmlEventSetCreate()
        except nvml.NVMLError:
            return None
        for handle in self._handles:
            try:
                nvml.nvmlDeviceRegisterEvents(handle, nvml.nvmlEventTypeXidCriticalError, event_set)
            except nvml.NVMLError:  # not supported on this device (e.g. some consumer boards)
                pass
        return event_set

    def _poll_xids(self) -> None:
        if self._events is None:
            return
        nvml = self.nvml
        while True:
            try:
                data = nvml.nvmlEventSetWait(self._events, 0)
            except nvml.NVMLError:  # NVML_ERROR_TIMEOUT: no more events
                return
            index = self._index_of(data.device)
            if index is not None:
                self._last_xid[index] = int(data.eventData)

    def _index_of(self, device: Any) -> int | None:
        """The index of an event's device (NVML handles are ctypes pointers: compare indices, not objects)."""
        nvml = self.nvml
        try:
            index = int(nvml.nvmlDeviceGetIndex(device))
        except (AttributeError, nvml.NVMLError):
            index = next((i for i, h in enumerate(self._handles) if h == device), -1)
        return index if 0 <= index < len(self._handles) else None

    def sample(self, ts: float | None = None) -> list[dict[str, Any]]:
        """One ``gpu`` event per readable device, all stamped ``ts`` (default now)."""
        nvml = self.nvml
        ts = time.time() if ts is None else ts
        self._last_xid = [0] * len(self._handles)
        self._poll_xids()
        self.skipped = []
        events: list[dict[str, Any]] = []
        for i, handle in enumerate(self._handles):
            try:
                util = nvml.nvmlDeviceGetUtilizationRates(handle).gpu
                memory = nvml.nvmlDeviceGetMemoryInfo(handle)
                temp = nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)
            except nvml.NVMLError as exc:
                self.skipped.append(f"gpu {i}: {exc}")
                continue
            try:
                power_w = nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0
            except nvml.NVMLError:
                power_w = 0.0
            labels = dict(self.labels, source="nvml")
            for key, getter in (("uuid", "nvmlDeviceGetUUID"), ("model_name", "nvmlDeviceGetName")):
                try:
                    value = getattr(nvml, getter)(handle)
                    labels[key] = value.decode() if isinstance(value, bytes) else str(value)
                except nvml.NVMLError:
                    pass
            events.append(gpu_event(
                self.node, i, util_pct=float(util), mem_used_bytes=int(memory.used),
                mem_total_bytes=int(memory.total), temp_c=float(temp), power_w=power_w,
                xid_errors=self._last_xid[i], pod=self.pod, labels=labels, ts=ts,
            ))
        return events

    def close(self) -> None:
        nvml = self.nvml
        try:
            if self._events is not None:
                nvml.nvmlEventSetFree(self._events)
            nvml.nvmlShutdown()
        except nvml.NVMLError:
            pass
