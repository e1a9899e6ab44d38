"""The NVML sampler's logic with a fake pynvml, and the CLI on a machine without a GPU."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

from agent.model import EVENT_ADAPTER, GpuEvent
from watchkeeper_emit import GpuUnavailable, NvmlSampler, open_nvml


class NVMLError(Exception):
    pass


def fake_nvml(devices: list[dict], xids: list[tuple[int, int]] | None = None, init_error: str | None = None):
    """A pynvml stand-in: ``devices`` hold util/used/total/temp/power_mw (a missing key raises)."""
    m = types.SimpleNamespace(NVMLError=NVMLError, NVML_TEMPERATURE_GPU=0, nvmlEventTypeXidCriticalError=8)
    pending = list(xids or [])
    m.shutdown_called = False

    def need(handle, key):
        if key not in devices[handle.index]:
            raise NVMLError("Not Supported")
        return devices[handle.index][key]

    def init():
        if init_error:
            raise NVMLError(init_error)

    def wait(event_set, timeout_ms):
        if not pending:
            raise NVMLError("Timeout")
        device, code = pending.pop(0)
        return types.SimpleNamespace(device=types.SimpleNamespace(index=device), eventData=code)

    m.nvmlInit = init
    m.nvmlDeviceGetCount = lambda: len(devices)
    m.nvmlDeviceGetHandleByIndex = lambda i: types.SimpleNamespace(index=i)  # a new object per call, like ctypes
    m.nvmlDeviceGetIndex = lambda h: h.index
    m.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=need(h, "util"))
    m.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=need(h, "used"), total=need(h, "total"))
    m.nvmlDeviceGetTemperature = lambda h, sensor: need(h, "temp")
    m.nvmlDeviceGetPowerUsage = lambda h: need(h, "power_mw")
    m.nvmlDeviceGetUUID = lambda h: f"GPU-{h.index}"
    m.nvmlDeviceGetName = lambda h: b"NVIDIA H100 80GB HBM3"
    m.nvmlEventSetCreate = lambda: "set"
    m.nvmlDeviceRegisterEvents = lambda h, kind, s: None
    m.nvmlEventSetWait = wait
    m.nvmlEventSetFree = lambda s: None
    m.nvmlShutdown = lambda: setattr(m, "shutdown_called", True)
    m.pending = pending
    return m


def test_samples_every_device_as_contract_events():
    nvml = fake_nvml(
        [
            {"util": 97, "used": 76 * 10**9, "total": 85_899_345_920, "temp": 81, "power_mw": 640_000},
            {"util": 3, "used": 10**9, "total": 85_899_345_920, "temp": 40},  # power not supported
            {"used": 1, "total": 2, "temp": 30},  # utilisation unreadable: skipped with the reason
        ],
        xids=[(1, 79)],
    )
    sampler = NvmlSampler(open_nvml(nvml), node="gpu-node-3", pod="trainer-7f9c")
    events = [EVENT_ADAPTER.validate_python(e) for e in sampler.sample(ts=1_764_064_800.0)]
    assert all(isinstance(e, GpuEvent) for e in events) and len(events) == 2
    first, second = events
    assert (first.node, first.gpu, first.pod, first.util_pct, first.power_w, first.xid_errors) == (
        "gpu-node-3", "0", "trainer-7f9c", 97.0, 640.0, 0)
    assert first.mem_used_ratio == pytest.approx(76e9 / 85_899_345_920)
    assert first.labels == {"source": "nvml", "uuid": "GPU-0", "model_name": "NVIDIA H100 80GB HBM3"}
    assert (second.power_w, second.xid_errors) == (0.0, 79)
    assert sampler.skipped == ["gpu 2: Not Supported"]
    again = sampler.sample(ts=1_764_064_810.0)
    assert again[1]["xid_errors"] == 0  # an XID is reported once, then resolves
    sampler.close()
    assert nvml.shutdown_called


def test_no_gpu_is_a_clear_error_not_a_crash():
    with pytest.raises(GpuUnavailable, match="no NVIDIA GPU is usable here .*Driver Not Loaded"):
        open_nvml(fake_nvml([], init_error="Driver Not Loaded"))
    with pytest.raises(GpuUnavailable, match="found no GPU"):
        open_nvml(fake_nvml([]))


def test_cli_without_gpu_exits_2_with_one_line():
    result = subprocess.run(
        [sys.executable, "-m", "watchkeeper_emit.cli", "gpu", "--stdout", "--once"],
        capture_output=True, text=True, timeout=60,
    )
    try:
        import pynvml

        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        pytest.skip("this machine has a usable GPU: the no-GPU path cannot be shown here")
    except Exception:  # noqa: BLE001 - no GPU, as expected on the CI machines
        pass
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("watchkeeper-emit: ") and "GPU" in result.stderr
    assert result.stdout == ""


def test_cli_rejects_a_bad_interval():
    result = subprocess.run(
        [sys.executable, "-m", "watchkeeper_emit.cli", "gpu", "--stdout", "--interval", "soon"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2 and "not a positive duration" in result.stderr
