"""Reference files of drift rules, read once when the rules load.

A ``drift`` or ``category_drift`` rule may name ``reference_file``: a CSV (with a
header row) or JSONL file of the values the model was validated on, its path relative
to the rules file. The loader reads it here, once, and hands the detector a bounded
summary as its ``reference`` parameter, so detectors never touch files and a checkpoint
or hot reload carries the reference with the rule:

* numbers become at most 256 ``[value, count]`` pairs: every distinct value with its
  count when there are at most 256 of them, else 256 slices of equal size of the sorted
  values, each standing at its median with the rows it holds (the total weight is the
  file's row count, so the reference's sampling error is judged by its real size);
* categories become ``[category, count]`` pairs (at most 4096 distinct categories).

Which value of a row: ``reference_column`` when the rule gives it, else the column or
key named like the detector's field (``features.amount``: a ``features.amount`` or
``amount`` column, or the nested ``{"features": {"amount": ...}}`` of a JSONL event),
else the file's only column. A JSONL line may also be a bare number or string. Empty
cells and JSON nulls are skipped; anything else unreadable is an error with its line.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["MAX_CATEGORIES", "MAX_PAIRS", "MAX_ROWS", "ReferenceFileError", "load_reference"]

MAX_PAIRS = 256
MAX_CATEGORIES = 4096
MAX_ROWS = 10_000_000  # a reference is a sample: ten million rows is ample, and bounded memory
_MIN_ROWS = 10  # the detectors' own minimum


class ReferenceFileError(ValueError):
    """The reference file cannot be used; the message says where and why."""


def load_reference(path: Path, *, field: str, column: str | None = None, categorical: bool = False) -> tuple[Any, ...]:
    """The detector's ``reference`` parameter summarised from ``path`` (see the module doc)."""
    try:
        values = list(_values(path, field, column, categorical))
    except OSError as exc:
        raise ReferenceFileError(f"cannot read reference file {str(path)!r}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ReferenceFileError(f"reference file {str(path)!r} is not UTF-8 text") from None
    if len(values) < _MIN_ROWS:
        raise ReferenceFileError(f"reference file {str(path)!r} has {len(values)} values; at least {_MIN_ROWS} are needed")
    if categorical:
        counts = Counter(str(v) for v in values)
        if len(counts) > MAX_CATEGORIES:
            raise ReferenceFileError(
                f"reference file {str(path)!r} has {len(counts)} distinct categories (at most {MAX_CATEGORIES}): "
                "is the field really categorical?"
            )
        return tuple((name, count) for name, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return quantile_pairs([float(v) for v in values])


def quantile_pairs(values: list[float], limit: int = MAX_PAIRS) -> tuple[tuple[float, int], ...]:
    """At most ``limit`` ``(value, count)`` pairs whose counts add up to ``len(values)``.

    >>> quantile_pairs([3.0, 1.0, 1.0, 2.0])
    ((1.0, 2), (2.0, 1), (3.0, 1))
    >>> pairs = quantile_pairs([float(i) for i in range(1000)], limit=4)
    >>> pairs, sum(c for _, c in pairs)
    (((124.5, 250), (374.5, 250), (624.5, 250), (874.5, 250)), 1000)
    """
    values = sorted(values)
    counts = Counter(values)
    if len(counts) <= limit:
        return tuple(sorted(counts.items()))
    n = len(values)
    out: list[tuple[float, int]] = []
    for k in range(limit):
        lo, hi = k * n // limit, (k + 1) * n // limit
        if hi > lo:
            mid = (lo + hi - 1) / 2
            value = (values[math.floor(mid)] + values[math.ceil(mid)]) / 2
            out.append((value, hi - lo))
    return tuple(out)


def _values(path: Path, field: str, column: str | None, categorical: bool) -> Iterator[Any]:
    name = str(path)
    reader = _jsonl if path.suffix.lower() in (".jsonl", ".ndjson") else _csv if path.suffix.lower() == ".csv" else None
    if reader is None:
        raise ReferenceFileError(f"reference file {name!r}: expected a .csv or .jsonl file")
    rows = 0
    for line, raw in reader(path, field, column):
        rows += 1
        if rows > MAX_ROWS:
            raise ReferenceFileError(f"reference file {name!r} has more than {MAX_ROWS:,} rows; sample it down")
        if raw is None or raw == "":
            continue
        if categorical:
            if isinstance(raw, (dict, list)):
                raise ReferenceFileError(f"{name}:{line}: expected a category, got {json.dumps(raw)[:60]}")
            yield raw
            continue
        try:
            value = float(raw) if not isinstance(raw, bool) else math.nan
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value):
            raise ReferenceFileError(f"{name}:{line}: expected a finite number, got {json.dumps(raw)[:60]}")
        yield value


def _candidates(field: str, column: str | None) -> list[str]:
    if column:
        return [column]
    return [field, field.rsplit(".", 1)[-1]]


def _csv(path: Path, field: str, column: str | None) -> Iterator[tuple[int, Any]]:
    with path.open(newline="", encoding="utf-8-sig") as fh:  # -sig: spreadsheets write a BOM
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            return
        header = [h.strip() for h in header]
        wanted = _candidates(field, column)
        index = next((header.index(c) for c in wanted if c in header), None)
        if index is None and len(header) == 1 and not column:
            index = 0
        if index is None:
            raise ReferenceFileError(
                f"{path}:1: no column {' or '.join(repr(c) for c in wanted)} in the header ({', '.join(header)}); "
                "name it with reference_column"
            )
        for row in reader:
            if not row:
                continue
            yield reader.line_num, row[index].strip() if index < len(row) else None


def _jsonl(path: Path, field: str, column: str | None) -> Iterator[tuple[int, Any]]:
    wanted = _candidates(field, column)
    with path.open(encoding="utf-8") as fh:
        for line, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            try:
                item = json.loads(text)
            except ValueError as exc:
                raise ReferenceFileError(f"{path}:{line}: not JSON: {exc}") from None
            if not isinstance(item, dict):
                yield line, item
                continue
            for name in wanted:
                found, value = _lookup(item, name)
                if found:
                    yield line, value
                    break
            else:
                raise ReferenceFileError(f"{path}:{line}: no {' or '.join(repr(c) for c in wanted)} in this row; name it with reference_column")


def _lookup(item: dict[str, Any], name: str) -> tuple[bool, Any]:
    """``name`` as a key, else as a dotted path into nested objects."""
    if name in item:
        return True, item[name]
    node: Any = item
    for part in name.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node
