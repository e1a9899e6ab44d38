"""An official-client ``ApiClient`` that records every request it is asked to make.

The point of the target checks is that a refused target costs ZERO requests, reads
included; the only way to see that from outside is to watch the client. ``call_api`` is
the one method every generated ``*Api`` method goes through, so recording it sees
everything. With ``forward=False`` nothing leaves the process (unit tests); with
``forward=True`` the request goes on to the real API server (integration tests).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from kubernetes import client

__all__ = ["RecordingApiClient"]


class RecordingApiClient(client.ApiClient):  # type: ignore[misc]
    """Records ``(method, URL path)`` of every call; forwards it to the server only when ``forward``."""

    def __init__(self, configuration: Any = None, *, forward: bool = True) -> None:
        super().__init__(configuration or client.Configuration(host="http://127.0.0.1:9"))
        self.forward = forward
        self.requests: list[tuple[str, str]] = []

    def call_api(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        self.requests.append((method, urlsplit(url).path))
        if not self.forward:
            raise client.exceptions.ApiException(status=599, reason="RecordingApiClient forwards nothing")
        return super().call_api(method, url, *args, **kwargs)
