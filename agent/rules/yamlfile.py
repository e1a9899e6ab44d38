"""YAML read with every node's position kept, so errors can point at file:line:col.

PyYAML's plain loaders forget where things came from and silently keep the last of two
duplicate keys. Prometheus keeps the YAML node beside each error; we keep a map from
the path of every value (``("groups", 0, "rules", 2, "for")``) to its position instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agent.errors import Location, RuleError, RuleFileErrors

__all__ = ["YamlDocument", "load_yaml"]

PathKey = tuple[str | int, ...]


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
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise RuleError(f"cannot read file: {exc.strerror}", Location(file)) from None
        except UnicodeDecodeError:
            raise RuleError("file is not UTF-8 text", Location(file)) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
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
    except (ValueError, TypeError) as exc:
        reason = f"cannot read {node.value!r} as {node.tag}: {exc}"
    errors.append(RuleError(f"YAML error: {reason}", _loc(doc.file, node.start_mark)))
    return None
