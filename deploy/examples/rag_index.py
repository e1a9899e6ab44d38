"""The vector index of the example RAG service: a deterministic embedder, FAISS builds, a rollable alias.

Nothing is downloaded. :class:`HashingEmbedder` maps text to a 384-dimensional unit
vector by feature hashing (each lowercase, crudely stemmed word that is not a stop word,
and each pair of them, adds +-1 to the dimension its BLAKE2 hash picks), so the same text gives the same vector in every process, and
texts that share words are close in cosine similarity, which is all retrieval needs to
behave like retrieval: a question about refunds finds the refund documents.

:class:`IndexStore` builds immutable index versions (``v1``, ``v2`` ...; a FAISS
``IndexFlatIP`` over normalised vectors, so scores are cosine similarities) under one
folder and serves whichever version the ``live`` alias points at, resolving it on
every lookup so a rollback takes effect on the next query. The alias lives in an
:class:`Aliases` store: :class:`LocalAliases` (a JSON file, with its own history and
``rollback``) or :class:`MlflowAliases` (the index registered in MLflow like a model,
one model version per build, tagged ``watchkeeper.kind=index``: the agent's
``rollback`` action with ``registry: index`` moves that alias back).

>>> e = HashingEmbedder()
>>> a, b, c = e.embed("how do I get a refund"), e.embed("refund for my order"), e.embed("reset the router")
>>> bool(a @ b > a @ c), round(float(a @ a), 4)
(True, 1.0)
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import faiss
import numpy as np

__all__ = ["Aliases", "Build", "HashingEmbedder", "IndexStore", "LocalAliases", "MlflowAliases", "INDEX_TAG"]

DIMS = 384
INDEX_TAG = ("watchkeeper.kind", "index")
"""The registered-model tag that marks an MLflow entry as a vector index (see actions/mlflow_registry.py)."""

_WORD = re.compile(r"[a-z0-9]+")
_STOPWORDS = frozenset(
    "a an and are as at be by can do does for from has have how i if in is it its my of on or our the their then "
    "there they this to until was we what when where which who will with you your".split()
)


def _stem(word: str) -> str:
    """A crude suffix strip (refunds, refunded, refunding -> refund): enough for a toy corpus."""
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)]
    return word


class HashingEmbedder:
    """Text -> unit vector of ``dims`` floats by signed feature hashing of words and word pairs."""

    def __init__(self, dims: int = DIMS) -> None:
        self.dims = dims

    def _slot(self, feature: str) -> tuple[int, float]:
        digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
        value = int.from_bytes(digest, "little")
        return value % self.dims, 1.0 if value >> 63 else -1.0

    def embed(self, text: str) -> np.ndarray:
        words = [_stem(w) for w in _WORD.findall(text.lower()) if w not in _STOPWORDS]
        vector = np.zeros(self.dims, dtype=np.float32)
        for feature in words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]:
            slot, sign = self._slot(feature)
            vector[slot] += sign
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm else vector

    def embed_many(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self.embed(t) for t in texts]) if texts else np.zeros((0, self.dims), dtype=np.float32)


class Aliases(Protocol):
    """Where the serving alias of an index lives."""

    def register(self, name: str, path: Path) -> str:
        """Record a new build; returns its version."""

    def set(self, name: str, alias: str, version: str) -> None: ...

    def get(self, name: str, alias: str) -> str | None: ...


class LocalAliases:
    """Aliases and builds in a JSON file next to the index files (no registry needed)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def _read(self) -> dict[str, Any]:
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def _write(self, state: dict[str, Any]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self.path)  # atomic: a reader never sees half a file

    def register(self, name: str, path: Path) -> str:
        with self._lock:
            state = self._read()
            builds = state.setdefault(name, {"builds": [], "aliases": {}, "history": {}})["builds"]
            builds.append(str(path))
            self._write(state)
            return str(len(builds))

    def set(self, name: str, alias: str, version: str) -> None:
        with self._lock:
            state = self._read()
            entry = state[name]
            entry["history"].setdefault(alias, []).append(version)
            entry["aliases"][alias] = version
            self._write(state)

    def get(self, name: str, alias: str) -> str | None:
        return self._read().get(name, {}).get("aliases", {}).get(alias)

    def rollback(self, name: str, alias: str) -> str:
        """Move ``alias`` back to the version that held it before; ValueError when there is none."""
        with self._lock:
            state = self._read()
            history = state[name]["history"].get(alias, [])
            if len(history) < 2:
                raise ValueError(f"{name}@{alias} has no previous version")
            history.pop()
            state[name]["aliases"][alias] = history[-1]
            self._write(state)
            return history[-1]


class MlflowAliases:
    """The index registered in MLflow like a model: one version per build, the alias on the served one.

    A version's ``source`` is where the build is published (``publish_uri`` + file name,
    an object store in production; MLflow refuses local paths without a run). This
    example serves the builds from its own folder by version, so the source is a record.
    """

    def __init__(self, tracking_uri: str, publish_uri: str = "s3://rag-indexes") -> None:
        from mlflow import MlflowClient

        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self.publish_uri = publish_uri.rstrip("/")

    def register(self, name: str, path: Path) -> str:
        from mlflow.exceptions import MlflowException

        try:
            self._client.get_registered_model(name)
        except MlflowException:
            self._client.create_registered_model(name, tags=dict([INDEX_TAG]))
        version = self._client.create_model_version(
            name, source=f"{self.publish_uri}/{path.name}", tags={"local_path": str(path)}, await_creation_for=0
        )
        return str(version.version)

    def set(self, name: str, alias: str, version: str) -> None:
        self._client.set_registered_model_alias(name, alias, version)

    def get(self, name: str, alias: str) -> str | None:
        from mlflow.exceptions import MlflowException

        try:
            return str(self._client.get_model_version_by_alias(name, alias).version)
        except MlflowException:
            return None


@dataclass(frozen=True)
class Build:
    """One loaded index version: the FAISS index and the documents its rows stand for."""

    version: str
    index: Any
    docs: tuple[dict[str, str], ...]

    def search(self, query: np.ndarray, k: int) -> list[tuple[dict[str, str], float]]:
        """The ``k`` nearest documents with their cosine similarity (fewer when the index is smaller)."""
        if not self.docs:
            return []
        scores, rows = self.index.search(query.reshape(1, -1).astype(np.float32), min(k, len(self.docs)))
        return [(self.docs[r], float(s)) for s, r in zip(scores[0], rows[0], strict=True) if r >= 0]


class IndexStore:
    """Builds index versions of ``name`` under ``root`` and serves the one ``alias`` points at."""

    def __init__(self, root: Path, name: str, aliases: Aliases, embedder: HashingEmbedder | None = None,
                 alias: str = "live") -> None:
        self.root, self.name, self.aliases, self.alias = root, name, aliases, alias
        self.embedder = embedder or HashingEmbedder()
        self._loaded: dict[str, Build] = {}
        root.mkdir(parents=True, exist_ok=True)

    def build(self, docs: Sequence[dict[str, str]], *, go_live: bool = True) -> str:
        """Embed ``docs`` ({id, text}), write a new immutable version, optionally point the alias at it."""
        vectors = self.embedder.embed_many([d["text"] for d in docs])
        index = faiss.IndexFlatIP(self.embedder.dims)
        if len(vectors):
            index.add(vectors)
        stem = self.root / f"{self.name}-{len(list(self.root.glob(f'{self.name}-*.faiss'))) + 1}"
        faiss.write_index(index, str(stem.with_suffix(".faiss")))
        stem.with_suffix(".json").write_text(json.dumps(list(docs)))
        version = self.aliases.register(self.name, stem.with_suffix(".faiss"))
        (self.root / f"{self.name}.v{version}").write_text(stem.name)  # version -> files
        if go_live:
            self.aliases.set(self.name, self.alias, version)
        return version

    def live(self) -> Build:
        """The build the alias points at now (loaded once per version)."""
        version = self.aliases.get(self.name, self.alias)
        if version is None:
            raise LookupError(f"index {self.name!r} has no {self.alias!r} alias")
        if version not in self._loaded:
            stem = self.root / (self.root / f"{self.name}.v{version}").read_text()
            docs = tuple(json.loads(stem.with_suffix(".json").read_text()))
            self._loaded[version] = Build(version, faiss.read_index(str(stem.with_suffix(".faiss"))), docs)
        return self._loaded[version]
