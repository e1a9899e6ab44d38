"""HttpServer on a loopback port, talked to with a real HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter

from agent.errors import ConfigError
from agent.runtime.approvers import Approvers
from agent.runtime.http import HttpServer, Request, Response

TOKEN = "test-token-0123456789"  # added routes need a bearer token (test_http_auth.py)


class Readiness:
    """A readiness switch the test flips."""

    def __init__(self) -> None:
        self.ready = False
        self.reason = "consumer has no partitions yet"

    def __call__(self) -> tuple[bool, str]:
        return self.ready, "" if self.ready else self.reason


async def echo(request: Request) -> Response:
    text = f"{request.method} {request.path} {request.query} {request.body.decode()}"
    return Response(201, text, headers={"x-route": "echo"})


async def broken(request: Request) -> Response:
    raise RuntimeError("handler bug")


@pytest.fixture
def registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("watchkeeper_test_total", "A test counter.", registry=registry).inc(3)
    return registry


@pytest.fixture
def readiness() -> Readiness:
    return Readiness()


@pytest.fixture
async def server(
    registry: CollectorRegistry, readiness: Readiness
) -> AsyncIterator[HttpServer]:
    routes = {"/api/v1/approvals/": echo, "/broken": broken}
    server = HttpServer("127.0.0.1:0", registry, readiness, routes=routes, authenticator=Approvers(shorthand=TOKEN))
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def http(server: HttpServer) -> AsyncIterator[httpx.AsyncClient]:
    base = f"http://127.0.0.1:{server.port}"
    auth = {"authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=base, trust_env=False, timeout=5, headers=auth) as client:
        yield client


async def test_port_zero_binds_a_real_port(server: HttpServer) -> None:
    assert server.port > 0


async def test_metrics_in_prometheus_text_format(http: httpx.AsyncClient) -> None:
    response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "watchkeeper_test_total 3.0" in response.text


async def test_metrics_negotiates_openmetrics(http: httpx.AsyncClient) -> None:
    response = await http.get("/metrics", headers={"accept": "application/openmetrics-text"})
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")


async def test_healthz(http: httpx.AsyncClient) -> None:
    response = await http.get("/healthz")
    assert (response.status_code, response.text) == (200, "ok\n")


async def test_readyz_flips_from_503_to_200(
    http: httpx.AsyncClient, readiness: Readiness
) -> None:
    response = await http.get("/readyz")
    assert (response.status_code, response.text) == (503, "consumer has no partitions yet\n")
    readiness.ready = True
    response = await http.get("/readyz")
    assert (response.status_code, response.text) == (200, "ready\n")


async def test_unknown_path_is_404(http: httpx.AsyncClient) -> None:
    assert (await http.get("/nope")).status_code == 404


async def test_builtin_routes_refuse_other_methods(http: httpx.AsyncClient) -> None:
    response = await http.post("/metrics")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"


async def test_head_has_no_body(http: httpx.AsyncClient) -> None:
    response = await http.head("/healthz")
    assert (response.status_code, response.content) == (200, b"")


async def test_extra_route_matches_its_subtree(http: httpx.AsyncClient) -> None:
    response = await http.post("/api/v1/approvals/42", params={"by": "sre"}, content=b"yes")
    assert response.status_code == 201
    assert response.text == "POST /api/v1/approvals/42 by=sre yes"
    assert response.headers["x-route"] == "echo"


async def test_failing_handler_answers_500(http: httpx.AsyncClient) -> None:
    assert (await http.get("/broken")).status_code == 500


async def test_stop_closes_the_port(registry: CollectorRegistry, readiness: Readiness) -> None:
    server = HttpServer("127.0.0.1:0", registry, readiness)
    await server.start()
    port = server.port
    await server.stop()
    await server.stop()  # idempotent
    async with httpx.AsyncClient(trust_env=False) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/healthz")


async def test_port_in_use_is_a_config_error(
    server: HttpServer, registry: CollectorRegistry, readiness: Readiness
) -> None:
    second = HttpServer(f"127.0.0.1:{server.port}", registry, readiness)
    with pytest.raises(ConfigError, match="cannot listen on"):
        await second.start()


@pytest.mark.parametrize("addr", ["9108", "host:", "host:port", "host:70000", "::1:9108"])
def test_bad_addresses_are_refused_readably(
    addr: str, registry: CollectorRegistry, readiness: Readiness
) -> None:
    with pytest.raises(ValueError, match="HTTP address"):
        HttpServer(addr, registry, readiness)


def test_builtin_route_cannot_be_replaced(
    registry: CollectorRegistry, readiness: Readiness
) -> None:
    with pytest.raises(ValueError, match="built in"):
        HttpServer(":0", registry, readiness, routes={"/metrics": echo})
