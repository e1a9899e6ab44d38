"""YAML read with every node's position kept, so errors can point at file:line:col.

PyYAML's plain loaders forget where things came from and silently keep the last of two
duplicate keys. Prometheus keeps the YAML node beside each error; we keep a map from
the path of every value (``("groups", 0, "rules", 2, "for")``) to its position instead.

A rule file is input from people, and hot reload reads it while the agent runs, so it
is read with bounds that fail fast as a ``RuleError`` at file:line instead of eating
the process: the file's size (``MAX_FILE_BYTES``), the nesting depth (``MAX_DEPTH``),
and the number of values the document holds once every alias is expanded
(``MAX_NODES``: a "billion laughs" file is a few lines that expand exponentially). An
alias that refers to the collection it is inside (``&a [*a]``) is refused: the data
it describes is infinite.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agent.errors import Location, RuleError, RuleFileErrors

__all__ = ["MAX_DEPTH", "MAX_FILE_BYTES", "MAX_NODES", "YamlDocument", "load_yaml"]

PathKey = tuple[str | int, ...]

MAX_FILE_BYTES = 1 << 20
"""A rule file larger than this (1 MiB; the shipped files are a few KiB) is refused."""
MAX_DEPTH = 64
"""Collections nested deeper than this are refused (rule files need about 8)."""
MAX_NODES = 100_000
"""Values (scalars and collections, aliases expanded) one document may hold."""


@dataclass
class YamlDocument:
    """Plain data (dicts, lists, scalars) plus the position of each value and key."""

    file: str
    data: Any
    positions: dict[PathKey, Location] = field(default_factory=dict)
    key_positions: dict[PathKey, Location] = field(default_factory=dict)

    def where(self, path: Sequence[str | int], *, key: bool = False) -> Location:
        """The closest known position of ``path``: the value, else its parent."""
        path = tuple(path)
        table = self.key_positions if key else self.positions
        while path:
            if path in table:
                return table[path]
            if path in self.positions:
                return self.positions[path]
            path = path[:-1]
        return self.positions.get((), Location(self.file, 1, 1))


def _loc(file: str, mark: yaml.Mark) -> Location:
    return Location(file, mark.line + 1, mark.column + 1)


def load_yaml(path: str | Path, text: str | None = None) -> YamlDocument:
    """Parse one YAML document; syntax errors and duplicate keys raise ``RuleFileErrors``."""
    file = str(path)
    if text is None:
        text = _read(path)
    if len(text) > MAX_FILE_BYTES:
        raise RuleError(f"file is larger than {MAX_FILE_BYTES} bytes; split it", Location(file))
    try:
        node = yaml.compose(text, Loader=_BoundedLoader)
    except _Refused as exc:
        raise RuleError(exc.reason, _loc(file, exc.mark)) from None
    except RecursionError:
        # a backstop: the depth bound should stop any nesting before Python's stack does
        raise RuleError(f"YAML nests too deeply (the limit is {MAX_DEPTH} levels)", Location(file)) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = _loc(file, mark) if mark else Location(file)
        raise RuleError(f"YAML syntax error: {exc.problem or exc}", where) from None
    except yaml.YAMLError as exc:
        raise RuleError(f"YAML error: {exc}", Location(file)) from None
    doc = YamlDocument(file=file, data=None)
    if node is None:
        doc.data = None
        return doc
    errors: list[RuleError] = []
    doc.data = _build(node, (), doc, errors)
    if errors:
        raise RuleFileErrors(errors)
    return doc


def _read(path: str | Path) -> str:
    """The file's text, refusing a huge one before it is read whole."""
    file = str(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise RuleError(f"cannot read file: {exc.strerror}", Location(file)) from None
    if len(raw) > MAX_FILE_BYTES:
        raise RuleError(f"file is larger than {MAX_FILE_BYTES} bytes; split it", Location(file))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RuleError("file is not UTF-8 text", Location(file)) from None


class _Refused(Exception):
    """A bound was passed while composing; carries the place and the reason."""

    def __init__(self, reason: str, mark: yaml.Mark) -> None:
        super().__init__(reason)
        self.reason = reason
        self.mark = mark


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe composer with the bounds of this module.

    It keeps, for every node composed, how many values it stands for once aliases are
    expanded, and a running total for the document, so an alias bomb is refused at the
    alias that passes ``MAX_NODES`` after reading the text once (never expanding it).
    Collections still being composed are tracked by anchor: an alias to one of them is
    recursive.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._sizes: dict[int, int] = {}
        self._open: set[str] = set()
        self._depth = 0
        self._total = 0

    def _count(self, n: int, mark: yaml.Mark) -> None:
        self._total += n
        if self._total > MAX_NODES:
            raise _Refused(
                f"YAML document holds more than {MAX_NODES} values once its aliases are expanded (an alias bomb?)", mark
            )

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            if event.anchor in self._open:
                raise _Refused(f"recursive YAML alias *{event.anchor}: it refers to a collection that contains it", event.start_mark)
            node = super().compose_node(parent, index)
            self._count(self._sizes.get(id(node), 1), event.start_mark)
            return node
        mark = self.peek_event().start_mark
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Refused(f"YAML nests more than {MAX_DEPTH} levels deep", mark)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        self._count(1, mark)
        if isinstance(node, yaml.SequenceNode):
            self._sizes[id(node)] = 1 + sum(self._sizes.get(id(item), 1) for item in node.value)
        elif isinstance(node, yaml.MappingNode):
            self._sizes[id(node)] = 1 + sum(self._sizes.get(id(k), 1) + self._sizes.get(id(v), 1) for k, v in node.value)
        return node

    def fetch_flow_collection_start(self, token_class: Any) -> None:
        # the scanner looks ahead over every open '[' or '{' (each may start a key), in time
        # quadratic in their number: stop at the bound before the composer would
        if self.flow_level >= MAX_DEPTH:
            raise _Refused(f"YAML nests more than {MAX_DEPTH} levels deep", self.get_mark())
        super().fetch_flow_collection_start(token_class)

    def compose_sequence_node(self, anchor: str | None) -> yaml.SequenceNode:
        return self._composing(anchor, super().compose_sequence_node)

    def compose_mapping_node(self, anchor: str | None) -> yaml.MappingNode:
        return self._composing(anchor, super().compose_mapping_node)

    def _composing(self, anchor: str | None, compose: Any) -> Any:
        if anchor is None:
            return compose(anchor)
        self._open.add(anchor)
        try:
            return compose(anchor)
        finally:
            self._open.discard(anchor)


_SCALARS = yaml.SafeLoader(" ")


def _build(node: yaml.Node, path: PathKey, doc: YamlDocument, errors: list[RuleError]) -> Any:
    doc.positions[path] = _loc(doc.file, node.start_mark)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                errors.append(RuleError("YAML merge keys ('<<') are not supported; write the keys out", _loc(doc.file, key_node.start_mark)))
                continue
            key = _scalar(key_node, doc, errors) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, (str, int, float, bool)) or key is None:
                errors.append(RuleError("mapping keys must be plain scalars", _loc(doc.file, key_node.start_mark)))
                continue
            key = str(key) if not isinstance(key, str) else key
            if key in out:
                errors.append(
                    RuleError(f"duplicate key {key!r}", _loc(doc.file, key_node.start_mark))
                )
                continue
            doc.key_positions[path + (key,)] = _loc(doc.file, key_node.start_mark)
            out[key] = _build(value_node, path + (key,), doc, errors)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, path + (i,), doc, errors) for i, item in enumerate(node.value)]
    return _scalar(node, doc, errors)


def _scalar(node: yaml.Node, doc: YamlDocument, errors: list[RuleError]) -> Any:
    """A scalar's value; an unknown tag (``!foo``) or a bad typed one (``!!int abc``)
    is reported at its position instead of escaping as a PyYAML traceback."""
    try:
        return _SCALARS.construct_object(node)
    except yaml.YAMLError as exc:
        reason = getattr(exc, "problem", None) or str(exc)
    except Exception as exc:  # noqa: BLE001 - PyYAML's constructors raise ValueError, IndexError (``!!int ""``), ...
        reason = f"cannot read {node.value!r} as {node.tag}: {type(exc).__name__}: {exc}"
    errors.append(RuleError(f"YAML error: {reason}", _loc(doc.file, node.start_mark)))
    return None
