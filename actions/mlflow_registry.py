"""The few MLflow registry calls a rollback makes, for models, prompts and indexes alike, with errors mapped.

In open-source MLflow 3 a prompt *is* a registered model (tagged
``mlflow.prompt.is_prompt``), its versions are model versions and its aliases are
registered-model aliases; but ``MlflowClient`` hides prompts from the model calls
(``get_registered_model`` says "not found" for a prompt) and has a parallel prompt API
(``get_prompt``, ``get_prompt_version_by_alias``, ``set_prompt_alias``,
``set_prompt_tag``, ``set_prompt_version_tag``, ``search_prompt_versions``). So
:class:`RegistryClient` takes ``kind`` ("model" or "prompt") and speaks the matching API;
the rollback above it is the same for both. History and bad tags for a prompt are
prompt tags, i.e. tags on the same underlying registered model.

A vector index (kind ``"index"``) is registered like a model: one registered model per
index, one model version per build (its source the index artifact), the serving alias
(``live``) on the build queries go to. It is told apart by the registered-model tag
``watchkeeper.kind = index`` (:data:`INDEX_KIND_TAG`): an index rollback refuses a
registered model without it, so a rule for indexes can never move a model's alias.

Everything here is blocking (MLflow's client is sync); callers wrap calls in
``asyncio.to_thread``. ``mlflow`` is imported lazily: the agent's rule loader imports
the action table, and importing MLflow costs seconds.

Errors: connection refused, timeouts, 429 and 5xx raise ``TransientActionError`` (the
remediator retries with backoff); a missing model, prompt or alias, a bad name and
403/401 raise ``ActionFailed`` with what was asked. MLflow's own HTTP retry defaults
(7 retries, backoff factor 2: about four minutes against a dead server) would hold a
target lease far beyond its TTL, so unless the operator set them, the client bounds
them (``MLFLOW_HTTP_REQUEST_MAX_RETRIES=2``, ``..._BACKOFF_FACTOR=1``,
``..._TIMEOUT=10``) and leaves retrying to the remediator.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Literal, TypeVar

from .alias_history import Move, VersionInfo, append_move, encode_history, history_tag, normalise_version, parse_history
from .base import ActionFailed, TransientActionError

__all__ = ["INDEX_KIND_TAG", "RegistryClient", "RegistryKind", "registry_errors"]

RegistryKind = Literal["model", "prompt", "index"]

INDEX_KIND_TAG = ("watchkeeper.kind", "index")
"""The registered-model tag (key, value) that marks a registered model as a vector index."""

_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
_TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_PAGE = 1000
_MAX_PAGES = 20
T = TypeVar("T")


@contextmanager
def registry_errors(what: str) -> Iterator[None]:
    """Translate what MLflow raises into the action contract, naming ``what`` was attempted."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except (ActionFailed, TransientActionError):
        raise
    except MlflowException as error:
        message = str(error.message if hasattr(error, "message") else error)
        status = error.get_http_status_code()
        # The client wraps connection refused and timeouts as "API request to ... failed".
        if status in _TRANSIENT_STATUS or message.startswith("API request to"):
            raise TransientActionError(f"{what}: MLflow unavailable: {message[:300]}") from error
        raise ActionFailed(f"{what}: {error.error_code}: {message[:300]}") from error
    except (OSError, TimeoutError) as error:  # requests' ConnectionError is an OSError
        raise TransientActionError(f"{what}: MLflow unreachable: {error}") from error


def _is_missing_alias(error: Exception) -> bool:
    from mlflow.exceptions import MlflowException

    text = str(error).lower()
    return isinstance(error, MlflowException) and "alias" in text and "not found" in text


class RegistryClient:
    """One MLflow registry (``tracking_uri``), addressed as models or as prompts.

    Parameters
    ----------
    tracking_uri
        The MLflow tracking server (also used as the registry URI).
    kind
        ``"model"`` for the Model Registry, ``"prompt"`` for the prompt registry,
        ``"index"`` for vector indexes registered as models (tagged :data:`INDEX_KIND_TAG`).
    """

    def __init__(self, tracking_uri: str, kind: RegistryKind = "model") -> None:
        for name, value in _HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)
        from mlflow import MlflowClient

        self.kind = kind
        self.tracking_uri = tracking_uri
        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def _call(self, what: str, call: Callable[[], T]) -> T:
        with registry_errors(f"{self.kind} registry at {self.tracking_uri}: {what}"):
            return call()

    # -- reads -------------------------------------------------------------------------

    def tags(self, name: str) -> dict[str, str]:
        """The registered model's (or prompt's) tags; ``ActionFailed`` if it does not exist."""
        if self.kind == "prompt":
            prompt = self._call(f"get prompt {name!r}", lambda: self._client.get_prompt(name))
            if prompt is None:
                raise ActionFailed(f"prompt {name!r} is not in the registry at {self.tracking_uri}")
            return dict(prompt.tags or {})
        model = self._call(f"get {self.kind} {name!r}", lambda: self._client.get_registered_model(name))
        tags = dict(model.tags or {})
        key, value = INDEX_KIND_TAG
        if self.kind == "index" and tags.get(key) != value:
            raise ActionFailed(
                f"registered model {name!r} at {self.tracking_uri} is not a vector index (no tag {key}={value}); "
                "an index rollback leaves it alone"
            )
        return tags

    def alias_holder(self, name: str, alias: str) -> str | None:
        """The version ``alias`` points at, or None if the alias is not set."""
        what = f"read alias {name}@{alias}"
        get = self._client.get_prompt_version_by_alias if self.kind == "prompt" else self._client.get_model_version_by_alias
        with registry_errors(f"{self.kind} registry at {self.tracking_uri}: {what}"):
            try:
                version = get(name, alias)
            except Exception as error:
                if _is_missing_alias(error):
                    return None
                raise
        return normalise_version(version.version)

    def history(self, name: str, alias: str) -> list[Move]:
        return parse_history(self.tags(name).get(history_tag(alias)))

    def versions(self, name: str) -> dict[str, VersionInfo]:
        """Every version with its status and tags (paged; bounded at 20 000 versions)."""
        if "'" in name or "\\" in name:
            raise ActionFailed(f"{self.kind} name {name!r} contains a quote or backslash; refusing to search")
        found: dict[str, VersionInfo] = {}
        token: str | None = None
        for _ in range(_MAX_PAGES):
            if self.kind == "prompt":
                page = self._call(
                    f"list versions of prompt {name!r}",
                    lambda t=token: self._client.search_prompt_versions(name, max_results=_PAGE, page_token=t),
                )
            else:
                page = self._call(
                    f"list versions of {self.kind} {name!r}",
                    lambda t=token: self._client.search_model_versions(f"name = '{name}'", max_results=_PAGE, page_token=t),
                )
            for item in page:
                status = str(getattr(item, "status", None) or "READY")  # prompt versions have none
                version = normalise_version(item.version)
                found[version] = VersionInfo(version, ready=status == "READY", tags=dict(item.tags or {}))
            token = page.token
            if not token:
                break
        return found

    # -- writes ------------------------------------------------------------------------

    def set_alias(self, name: str, alias: str, version: str) -> None:
        what = f"set alias {name}@{alias} -> {version}"
        if self.kind == "prompt":
            self._call(what, lambda: self._client.set_prompt_alias(name, alias, int(version)))
        else:
            self._call(what, lambda: self._client.set_registered_model_alias(name, alias, version))

    def set_tag(self, name: str, key: str, value: str) -> None:
        what = f"tag {name!r} {key}"
        if self.kind == "prompt":
            self._call(what, lambda: self._client.set_prompt_tag(name, key, value))
        else:
            self._call(what, lambda: self._client.set_registered_model_tag(name, key, value))

    def set_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        what = f"tag {name!r} version {version} {key}"
        if self.kind == "prompt":
            self._call(what, lambda: self._client.set_prompt_version_tag(name, version, key, value))
        else:
            self._call(what, lambda: self._client.set_model_version_tag(name, version, key, value))

    def write_history(self, name: str, alias: str, moves: list[Move]) -> None:
        self.set_tag(name, history_tag(alias), encode_history(moves))

    def version_tags(self, name: str, version: str) -> Mapping[str, str]:
        what = f"get {name!r} version {version}"
        if self.kind == "prompt":
            found = self._call(what, lambda: self._client.get_prompt_version(name, version))
            if found is None:
                raise ActionFailed(f"prompt {name!r} has no version {version}")
        else:
            found = self._call(what, lambda: self._client.get_model_version(name, version))
        return dict(found.tags or {})

    def move_alias(self, name: str, alias: str, version: str, move: Move, *, holder: str | None) -> list[Move]:
        """Move ``alias`` to ``version`` and record it in the history (for CI and scripts too).

        The history entry is written first, so an interrupted move leaves a record a
        retry can finish, never an unexplained move.
        """
        moves = append_move(self.history(name, alias), move, holder=holder)
        self.write_history(name, alias, moves)
        self.set_alias(name, alias, version)
        return moves
