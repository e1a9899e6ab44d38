"""DCGM exporter series -> gpu events: the mapping on recorded-shape results, MIG, gaps."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_api_client import PrometheusApiClientException

from agent.model import EVENT_ADAPTER, GpuEvent
from agent.runtime.dcgm import DCGM_METRICS, DcgmPoller, dcgm_query, events_from_dcgm

TS = 1_717_000_000.5
MIB = 1 << 20

# labels as dcgm-exporter 3.x writes them, after a Prometheus scrape (instance, job added)
A100 = {
    "DCGM_FI_DRIVER_VERSION": "535.104.12",
    "Hostname": "gpu-node-1",
    "UUID": "GPU-0f3a2c1e-5b6d-4e7f-8a9b-0c1d2e3f4a5b",
    "device": "nvidia0",
    "gpu": "0",
    "modelName": "NVIDIA A100-SXM4-80GB",
    "pci_bus_id": "00000000:07:00.0",
    "instance": "10.0.3.17:9400",
    "job": "dcgm-exporter",
    "exported_pod": "trainer-7d9f-0",
    "exported_namespace": "ml",
    "exported_container": "trainer",
    "pod": "dcgm-exporter-x2x7k",
    "namespace": "gpu-operator",
}


def series(name: str, value: float | str, labels: dict[str, str], ts: float = TS) -> dict:
    return {"metric": {"__name__": name, **labels}, "value": [ts, str(value)]}


def whole_gpu(labels: dict[str, str], **overrides: float) -> list[dict]:
    values = {
        "DCGM_FI_DEV_GPU_UTIL": 87,
        "DCGM_FI_DEV_FB_USED": 61_440,
        "DCGM_FI_DEV_FB_FREE": 20_480,
        "DCGM_FI_DEV_GPU_TEMP": 71,
        "DCGM_FI_DEV_POWER_USAGE": 312.25,
        "DCGM_FI_DEV_XID_ERRORS": 0,
        **overrides,
    }
    return [series(name, value, labels) for name, value in values.items() if value is not None]


def test_query_selects_every_series_the_mapping_reads():
    assert dcgm_query() == '{__name__=~"' + "|".join(DCGM_METRICS) + '"}'
    assert dcgm_query('job="dcgm", cluster="eu-1"').endswith(', job="dcgm", cluster="eu-1"}')


def test_whole_gpu_maps_values_units_and_labels():
    mapped = events_from_dcgm(whole_gpu(A100))
    assert mapped.skipped == []
    assert mapped.events == [
        {
            "type": "gpu",
            "ts": TS,
            "node": "gpu-node-1",
            "gpu": "0",
            "pod": "trainer-7d9f-0",  # the workload's pod, not the exporter's
            "util_pct": 87.0,
            "mem_used_bytes": 61_440 * MIB,
            "mem_total_bytes": 81_920 * MIB,
            "temp_c": 71.0,
            "power_w": 312.25,
            "xid_errors": 0,
            "labels": {
                "source": "dcgm",
                "uuid": "GPU-0f3a2c1e-5b6d-4e7f-8a9b-0c1d2e3f4a5b",
                "model_name": "NVIDIA A100-SXM4-80GB",
                "device": "nvidia0",
                "namespace": "ml",
                "container": "trainer",
            },
        }
    ]
    event = EVENT_ADAPTER.validate_python(mapped.events[0])
    assert isinstance(event, GpuEvent) and event.mem_used_ratio == 0.75


def test_two_gpus_of_two_nodes_are_two_events_and_xid_is_the_last_code():
    other = {**A100, "Hostname": "gpu-node-2", "gpu": "3", "UUID": "GPU-2"}
    result = whole_gpu(A100) + whole_gpu(other, DCGM_FI_DEV_XID_ERRORS=79)
    events = {(e["node"], e["gpu"]): e for e in events_from_dcgm(result).events}
    assert sorted(events) == [("gpu-node-1", "0"), ("gpu-node-2", "3")]
    assert events[("gpu-node-2", "3")]["xid_errors"] == 79


def test_node_falls_back_to_instance_without_port_and_pod_to_pod():
    labels = {k: v for k, v in A100.items() if k not in ("Hostname", "exported_pod")}
    (event,) = events_from_dcgm(whole_gpu(labels)).events
    assert event["node"] == "10.0.3.17"
    assert event["pod"] == "dcgm-exporter-x2x7k"
    (event,) = events_from_dcgm(whole_gpu(labels), node_labels=("instance",)).events
    assert event["node"] == "10.0.3.17"


def test_idle_gpu_has_no_pod():
    labels = {k: v for k, v in A100.items() if "pod" not in k}
    (event,) = events_from_dcgm(whole_gpu(labels)).events
    assert event["pod"] is None


def test_mig_instances_use_graphics_engine_activity_and_parent_device_values():
    parent = [series("DCGM_FI_DEV_GPU_TEMP", 64, A100), series("DCGM_FI_DEV_POWER_USAGE", 250.5, A100)]
    result = list(parent)
    for gi, active, used in (("1", 0.42, 4_000), ("2", 1.02, 9_000)):
        mig = {**A100, "GPU_I_ID": gi, "GPU_I_PROFILE": "2g.20gb"}
        result += [
            series("DCGM_FI_PROF_GR_ENGINE_ACTIVE", active, mig),
            series("DCGM_FI_DEV_FB_USED", used, mig),
            series("DCGM_FI_DEV_FB_FREE", 19_968 - used, mig),
        ]
    mapped = events_from_dcgm(result)
    assert mapped.skipped == []  # the parent only lends its device-wide values
    by_gpu = {e["gpu"]: e for e in mapped.events}
    assert sorted(by_gpu) == ["0/1", "0/2"]
    first = by_gpu["0/1"]
    assert first["util_pct"] == pytest.approx(42.0)
    assert by_gpu["0/2"]["util_pct"] == 100.0  # a ratio a hair over 1 is clamped
    assert first["mem_total_bytes"] == 19_968 * MIB
    assert (first["temp_c"], first["power_w"], first["xid_errors"]) == (64.0, 250.5, None)
    assert first["labels"]["mig_profile"] == "2g.20gb" and first["labels"]["mig_instance"] == "1"


def test_gpu_util_wins_over_graphics_engine_activity_when_both_exist():
    result = whole_gpu(A100) + [series("DCGM_FI_PROF_GR_ENGINE_ACTIVE", 0.1, A100)]
    (event,) = events_from_dcgm(result).events
    assert event["util_pct"] == 87.0


def test_missing_series_skip_the_gpu_with_the_reason():
    result = whole_gpu(A100, DCGM_FI_DEV_GPU_UTIL=None, DCGM_FI_DEV_FB_FREE=None)
    other = {**A100, "gpu": "1"}
    result += whole_gpu(other, DCGM_FI_DEV_XID_ERRORS=None)
    mapped = events_from_dcgm(result)
    assert [(e["gpu"], e["xid_errors"]) for e in mapped.events] == [("1", None)]  # XID is optional
    assert mapped.skipped == [
        "node gpu-node-1 gpu 0: missing DCGM_FI_DEV_GPU_UTIL (or DCGM_FI_PROF_GR_ENGINE_ACTIVE), DCGM_FI_DEV_FB_FREE"
    ]


def test_unreadable_values_and_unlabelled_series_are_reported():
    no_gpu = {k: v for k, v in A100.items() if k != "gpu"}
    result = [series("DCGM_FI_DEV_GPU_TEMP", 70, no_gpu), {"metric": {"__name__": "DCGM_FI_DEV_GPU_UTIL"}}]
    mapped = events_from_dcgm(result)
    assert mapped.events == []
    assert [s.split(":")[-1].strip() for s in mapped.skipped] == ["no gpu label", "no readable value"]


def test_nan_values_count_as_missing_and_bad_events_are_skipped():
    mapped = events_from_dcgm(whole_gpu(A100, DCGM_FI_DEV_GPU_TEMP="NaN"))
    assert mapped.events == [] and "missing DCGM_FI_DEV_GPU_TEMP" in mapped.skipped[0]
    mapped = events_from_dcgm(whole_gpu(A100, DCGM_FI_DEV_FB_USED=0, DCGM_FI_DEV_FB_FREE=0))
    assert mapped.events == [] and "invalid gpu event: mem_total_bytes" in mapped.skipped[0]


class RecordedPrometheus:
    """Our seam: anything with ``custom_query``; answers from a list, then fails."""

    def __init__(self, *answers: list[dict] | Exception) -> None:
        self.answers = list(answers)
        self.queries: list[str] = []

    def custom_query(self, query: str) -> list[dict]:
        self.queries.append(query)
        answer = self.answers.pop(0) if self.answers else PrometheusApiClientException("HTTP Status Code 503")
        if isinstance(answer, Exception):
            raise answer
        return answer


async def test_poll_once_queries_in_a_thread_and_maps():
    client = RecordedPrometheus(whole_gpu(A100))
    poller = DcgmPoller(client=client, match='job="dcgm-exporter"')
    events = await poller.poll_once()
    assert [e["node"] for e in events] == ["gpu-node-1"]
    assert client.queries == [dcgm_query('job="dcgm-exporter"')]


async def test_run_publishes_keyed_by_node_survives_a_failed_poll_and_stops():
    other = {**A100, "Hostname": "gpu-node-2"}
    client = RecordedPrometheus(whole_gpu(A100), PrometheusApiClientException("HTTP Status Code 503"), whole_gpu(other))
    poller = DcgmPoller(client=client)
    stop = asyncio.Event()
    published: list[tuple[str, str]] = []

    async def publish(key: str, event: dict) -> None:
        published.append((key, event["node"]))
        if len(published) == 2:
            stop.set()

    await asyncio.wait_for(poller.run(publish, interval_s=0.01, stop=stop), timeout=5)
    assert published == [("gpu-node-1", "gpu-node-1"), ("gpu-node-2", "gpu-node-2")]
    assert (poller.polls, poller.failures, poller.published) == (2, 1, 2)


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="timeout_s"):
        DcgmPoller(client=RecordedPrometheus(), timeout_s=0)
    with pytest.raises(ValueError, match="node_labels"):
        DcgmPoller(client=RecordedPrometheus(), node_labels=())
