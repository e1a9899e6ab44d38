"""AlertmanagerClient against a fake Alertmanager behind httpx.MockTransport."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from structlog.testing import capture_logs

from agent.errors import DeliveryError
from agent.model import Alert, AlertState
from agent.runtime.alertmanager import AlertmanagerClient
from agent.runtime.selfmetrics import SelfMetrics

AM1 = "http://am1:9093"
AM2 = "http://am2:9093"
NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z, the fake wall clock


class FakeAlertmanager:
    """Records every post by host; a host can be down, or fail its next N posts."""

    def __init__(self) -> None:
        self.posts: list[httpx.Request] = []
        self.down: set[str] = set()
        self.status: dict[str, int] = {}
        self.fail_next: dict[str, int] = {}

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.posts.append(request)
        host = request.url.host
        if host in self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if self.fail_next.get(host, 0) > 0:
            self.fail_next[host] -= 1
            return httpx.Response(503, text="not ready")
        return httpx.Response(self.status.get(host, 200), text="")

    def bodies(self, host: str) -> list[list[dict[str, object]]]:
        return [json.loads(r.content) for r in self.posts if r.url.host == host]


def make_alert(state: AlertState, **overrides: object) -> Alert:
    fields: dict[str, object] = {
        "fingerprint": "a1b2c3",
        "rule_id": "payments/HighP99Latency",
        "state": state,
        "labels": {"alertname": "HighP99Latency", "service": "payments"},
        "annotations": {"summary": "p99 is 900 ms"},
        "active_at": 1_699_999_000.0,
        "value": 0.97,
        "fired_at": 1_699_999_300.0,
    }
    fields.update(overrides)
    return Alert(**fields)  # type: ignore[arg-type]


@pytest.fixture
def am() -> FakeAlertmanager:
    return FakeAlertmanager()


@pytest.fixture
def metrics() -> SelfMetrics:
    return SelfMetrics()


@pytest.fixture
async def client(am: FakeAlertmanager, metrics: SelfMetrics) -> AsyncIterator[AlertmanagerClient]:
    async with AlertmanagerClient(
        [AM1, AM2],
        metrics=metrics,
        transport=am.transport(),
        clock=lambda: NOW,
        resend_interval_s=60.0,
        generator_url="http://watchkeeper:9108/rules",
        headers={"Authorization": "Bearer t0ken"},
        seed=7,
    ) as c:
        yield c


def sample(metrics: SelfMetrics) -> Callable[..., float]:
    def value(name: str, **labels: str) -> float:
        found = metrics.registry.get_sample_value(name, labels)
        return 0.0 if found is None else found

    return value


def test_firing_payload_starts_at_fire_time_and_ends_after_four_resends(
    client: AlertmanagerClient,
) -> None:
    [body] = client.payload([make_alert(AlertState.FIRING)])
    assert body == {
        "labels": {"alertname": "HighP99Latency", "service": "payments"},
        "annotations": {"summary": "p99 is 900 ms"},
        "startsAt": "2023-11-14T22:01:40.000Z",  # fired_at, event time
        "endsAt": "2023-11-14T22:17:20.000Z",  # NOW + 4 * 60 s, wall time
        "generatorURL": "http://watchkeeper:9108/rules?rule=payments%2FHighP99Latency",
    }


def test_resolved_payload_ends_at_resolve_time(client: AlertmanagerClient) -> None:
    [body] = client.payload([make_alert(AlertState.RESOLVED, resolved_at=1_699_999_500.5)])
    assert body["startsAt"] == "2023-11-14T22:01:40.000Z"
    assert body["endsAt"] == "2023-11-14T22:05:00.500Z"


def test_start_falls_back_to_active_at(client: AlertmanagerClient) -> None:
    [body] = client.payload([make_alert(AlertState.FIRING, fired_at=None)])
    assert body["startsAt"] == "2023-11-14T21:56:40.000Z"


def test_firing_alert_from_the_future_still_ends_after_it_starts(
    client: AlertmanagerClient,
) -> None:
    [body] = client.payload([make_alert(AlertState.FIRING, fired_at=NOW + 3600)])
    assert body["endsAt"] > body["startsAt"]


def test_labels_and_annotations_are_strings() -> None:
    metrics = SelfMetrics()
    client = AlertmanagerClient([AM1], metrics=metrics, clock=lambda: NOW)
    alert = make_alert(AlertState.FIRING, labels={"alertname": "X", "gpu": 3})
    [body] = client.payload([alert])
    assert body["labels"] == {"alertname": "X", "gpu": "3"}
    assert body["generatorURL"] == ""


async def test_pending_and_inactive_alerts_are_never_sent(
    client: AlertmanagerClient, am: FakeAlertmanager
) -> None:
    quiet = [make_alert(AlertState.PENDING), make_alert(AlertState.INACTIVE)]
    assert client.payload(quiet) == []
    await client.send(quiet)
    assert am.posts == []
    await client.send([*quiet, make_alert(AlertState.FIRING)])
    assert [len(b) for b in am.bodies("am1")] == [1]


async def test_every_alertmanager_gets_every_alert(
    client: AlertmanagerClient, am: FakeAlertmanager, metrics: SelfMetrics
) -> None:
    await client.send([make_alert(AlertState.FIRING)])
    assert len(am.bodies("am1")) == len(am.bodies("am2")) == 1
    request = am.posts[0]
    assert request.method == "POST"
    assert request.url.path == "/api/v2/alerts"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["authorization"] == "Bearer t0ken"
    value = sample(metrics)
    assert value("watchkeeper_alertmanager_sends_total", url=AM1, outcome="ok") == 1
    assert value("watchkeeper_alertmanager_sends_total", url=AM2, outcome="ok") == 1


async def test_one_alertmanager_down_still_succeeds_and_counts_the_failure(
    client: AlertmanagerClient, am: FakeAlertmanager, metrics: SelfMetrics
) -> None:
    am.down.add("am2")
    await client.send([make_alert(AlertState.FIRING)])
    value = sample(metrics)
    assert value("watchkeeper_alertmanager_sends_total", url=AM1, outcome="ok") == 1
    assert value("watchkeeper_alertmanager_sends_total", url=AM2, outcome="error") == 1
    assert value("watchkeeper_alertmanager_send_failures_total", url=AM2) == 1
    assert value("watchkeeper_alertmanager_send_failures_total", url=AM1) == 0


async def test_all_down_raises_naming_every_url(
    client: AlertmanagerClient, am: FakeAlertmanager, metrics: SelfMetrics
) -> None:
    am.down.add("am1")
    am.status["am2"] = 500
    with pytest.raises(DeliveryError) as caught:
        await client.send([make_alert(AlertState.FIRING)])
    message = str(caught.value)
    assert f"{AM1}: ConnectError: connection refused" in message
    assert f"{AM2}: HTTP 500" in message
    value = sample(metrics)
    assert value("watchkeeper_alertmanager_send_failures_total", url=AM1) == 1
    assert value("watchkeeper_alertmanager_send_failures_total", url=AM2) == 1


async def test_deliver_retries_until_accepted(
    client: AlertmanagerClient, am: FakeAlertmanager, metrics: SelfMetrics
) -> None:
    am.fail_next.update({"am1": 2, "am2": 2})
    with capture_logs() as logs:
        ok = await client.deliver([make_alert(AlertState.FIRING)], base_delay_s=0.0)
    assert ok is True
    assert len(am.bodies("am1")) == 3
    retries = [e for e in logs if e["event"] == "alertmanager delivery failed; retrying"]
    assert [e["attempt"] for e in retries] == [1, 2]
    assert sample(metrics)("watchkeeper_alertmanager_pending_notifications") == 0


async def test_deliver_gives_up_after_max_attempts(
    client: AlertmanagerClient, am: FakeAlertmanager
) -> None:
    am.down.update({"am1", "am2"})
    with capture_logs() as logs:
        ok = await client.deliver(
            [make_alert(AlertState.FIRING)], max_attempts=3, base_delay_s=0.0
        )
    assert ok is False
    assert len(am.bodies("am1")) == 3
    assert [e["log_level"] for e in logs] == ["warning", "warning", "error"]


async def test_deliver_stops_when_asked(
    client: AlertmanagerClient, am: FakeAlertmanager
) -> None:
    am.down.update({"am1", "am2"})
    stop = asyncio.Event()
    stop.set()
    assert await client.deliver([make_alert(AlertState.FIRING)], stop=stop) is False
    assert len(am.bodies("am1")) == 1  # one try, even when already stopping


async def test_deliver_wakes_from_backoff_when_stopped(
    client: AlertmanagerClient, am: FakeAlertmanager
) -> None:
    am.down.update({"am1", "am2"})
    stop = asyncio.Event()
    task = asyncio.create_task(
        client.deliver([make_alert(AlertState.FIRING)], stop=stop, base_delay_s=3600.0,
                       max_delay_s=3600.0)
    )
    while not am.posts:
        await asyncio.sleep(0)
    stop.set()
    assert await asyncio.wait_for(task, timeout=5) is False


async def test_deliver_drops_alerts_every_alertmanager_rejects(
    client: AlertmanagerClient, am: FakeAlertmanager
) -> None:
    am.status.update({"am1": 400, "am2": 400})
    assert await client.deliver([make_alert(AlertState.FIRING)], base_delay_s=0.0) is False
    assert len(am.bodies("am1")) == 1


async def test_deliver_with_nothing_to_send_is_done(
    client: AlertmanagerClient, am: FakeAlertmanager
) -> None:
    assert await client.deliver([make_alert(AlertState.PENDING)]) is True
    assert am.posts == []


async def test_same_seed_same_backoff(am: FakeAlertmanager) -> None:
    am.down.update({"am1"})

    async def delays(seed: int) -> list[float]:
        async with AlertmanagerClient(
            [AM1], metrics=SelfMetrics(), transport=am.transport(), seed=seed
        ) as c:
            with capture_logs() as logs:
                await c.deliver(
                    [make_alert(AlertState.FIRING)], max_attempts=4, base_delay_s=1e-6
                )
        return [e["retry_in_s"] for e in logs if "retry_in_s" in e]

    assert await delays(1) == await delays(1)


@pytest.mark.parametrize(
    ("urls", "fragment"),
    [
        ([], "at least one"),
        ("http://am:9093", "not one string"),
        (["am:9093"], "absolute http"),
        (["ftp://am"], "absolute http"),
        (["http://user:pw@am:9093"], "credentials"),
        (["http://am:9093", "http://am:9093/"], "listed twice"),
    ],
)
def test_bad_urls_are_refused_readably(urls: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        AlertmanagerClient(urls, metrics=SelfMetrics())  # type: ignore[arg-type]


def test_bad_generator_url_is_refused() -> None:
    with pytest.raises(ValueError, match="generator_url"):
        AlertmanagerClient([AM1], metrics=SelfMetrics(), generator_url="watchkeeper/rules")


async def test_url_may_already_name_the_api_path(am: FakeAlertmanager) -> None:
    url = "https://am.example/prefix/api/v2/alerts"
    async with AlertmanagerClient([url], metrics=SelfMetrics(), transport=am.transport()) as c:
        await c.send([make_alert(AlertState.FIRING)])
    assert str(am.posts[0].url) == url
