"""Who may use the agent's HTTP API: bearer tokens bound to names, read from a file.

An approval changes production, so the audit record must say who approved, and that
name must be proven, not claimed: each person (or tool) gets their own token, and the
name recorded is the one the token is bound to. The table comes from
``WATCHKEEPER_APPROVERS_FILE`` in one of two shapes:

* ``name:token`` lines (``#`` comments and blank lines ignored); every entry approves;
* a YAML (or JSON) mapping of name to a token, or to ``{token: ..., role: read|approve}``.
  ``read`` tokens may list actions and open reports but not answer requests (a
  dashboard, an on-call bot); ``approve`` tokens may do both.

Tokens are at least 16 visible ASCII characters (``openssl rand -hex 32``), distinct,
and never logged; names are short and plain, because they land in audit records. The
file is read again when it changes (a Kubernetes Secret update swaps it in place); a
bad new version is logged and the previous table stays. A file that does not exist
(an optional Secret not created yet) refuses every token until it appears, and one
that disappears takes its tokens with it. A file that others may write is refused,
one that others may read is warned about.

``WATCHKEEPER_ACTIONS_APPROVE_TOKEN_FILE``, the older single-token setting, still
works: its token approves under the name ``approve-token``.

>>> approvers = Approvers(shorthand="0123456789abcdef")
>>> approvers.authenticate(b"Bearer 0123456789abcdef")
Principal(name='approve-token', role=<Role.APPROVE: 'approve'>)
>>> approvers.authenticate(b"Bearer \\xff\\xfe") is None
True
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from agent.errors import ConfigError
from agent.logs import get_logger

__all__ = ["SHORTHAND_NAME", "Approvers", "Principal", "Role", "parse_approvers"]

_log = get_logger(__name__)

SHORTHAND_NAME = "approve-token"
"""The name the single token of ``WATCHKEEPER_ACTIONS_APPROVE_TOKEN_FILE`` approves under."""

MIN_TOKEN_CHARS = 16
_MAX_FILE_BYTES = 1 << 16
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")
_TOKEN = re.compile(rb"[\x21-\x7e]+")
_LINE = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}):(?P<token>\S+)")
_WHERE = "WATCHKEEPER_APPROVERS_FILE"


class Role(enum.Enum):
    """What a token may do: ``read`` lists and opens; ``approve`` also answers requests."""

    READ = "read"
    APPROVE = "approve"


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller of one request: the name bound to its token, and its role."""

    name: str
    role: Role

    def may(self, role: Role) -> bool:
        """Whether this caller holds ``role`` (approvers may also read)."""
        return self.role is Role.APPROVE or role is Role.READ


def parse_approvers(text: str, where: str = _WHERE) -> dict[bytes, Principal]:
    """The table in ``text``, keyed by the SHA-256 of each token; ``ConfigError`` if malformed.

    Keys are digests so that a lookup compares fixed-length values in constant time
    and the table in memory holds no token.
    """
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if lines and all(_LINE.fullmatch(ln) for ln in lines):
        entries = [(m["name"], m["token"], Role.APPROVE.value) for m in map(_LINE.fullmatch, lines) if m]
    else:
        entries = _yaml_entries(text, where)
    table: dict[bytes, Principal] = {}
    names: set[str] = set()
    for name, token, role in entries:
        if not _NAME.fullmatch(name):
            raise ConfigError(f"approver name {name[:64]!r} must be 1-64 of A-Z a-z 0-9 . _ @ + - (a letter or digit first)", where)
        if name in names:
            raise ConfigError(f"approver {name!r} is listed twice", where)
        table.update(_entry(name, token, role, where, table))
        names.add(name)
    return table


def _yaml_entries(text: str, where: str) -> list[tuple[str, str, str]]:
    try:
        doc = yaml.safe_load(text)
    except RecursionError:
        raise ConfigError("nested too deeply to be an approvers file", where) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"neither name:token lines nor a YAML mapping (YAML error{at})", where) from None
    if doc is None:
        return []
    if not isinstance(doc, Mapping):
        raise ConfigError("must be name:token lines or a mapping of name to token or {token, role}", where)
    out = []
    for name, value in doc.items():
        if isinstance(value, Mapping):
            unknown = set(value) - {"token", "role"}
            if unknown:
                raise ConfigError(f"approver {str(name)[:64]!r}: unknown keys {sorted(map(str, unknown))} (token, role)", where)
            token, role = value.get("token"), value.get("role", Role.APPROVE.value)
        else:
            token, role = value, Role.APPROVE.value
        if not isinstance(token, str) or not isinstance(role, str):
            raise ConfigError(f"approver {str(name)[:64]!r}: the token and role must be strings", where)
        out.append((str(name), token, role))
    return out


def _entry(name: str, token: str, role: str, where: str, table: Mapping[bytes, Principal]) -> dict[bytes, Principal]:
    """One checked row; the messages name the approver, never the token."""
    try:
        parsed = Role(role)
    except ValueError:
        raise ConfigError(f"approver {name!r}: role {role[:32]!r} is not read or approve", where) from None
    raw = token.encode("utf-8")
    if not _TOKEN.fullmatch(raw) or len(raw) < MIN_TOKEN_CHARS:
        raise ConfigError(
            f"approver {name!r}: a token must be at least {MIN_TOKEN_CHARS} visible ASCII characters "
            "with no spaces (e.g. `openssl rand -hex 32`)",
            where,
        )
    digest = hashlib.sha256(raw).digest()
    if digest in table:
        raise ConfigError(f"approver {name!r} has the same token as {table[digest].name!r}; give each their own", where)
    return {digest: Principal(name, parsed)}


def _bearer(authorization: bytes) -> bytes | None:
    scheme, _, token = authorization.strip(b" \t").partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    return token.strip(b" \t") or None


class Approvers:
    """The token table the HTTP server authenticates against, kept current with its file.

    Parameters
    ----------
    path
        The approvers file (see the module docstring); ``None`` for none.
    shorthand
        The token of ``WATCHKEEPER_ACTIONS_APPROVE_TOKEN_FILE``; it approves as ``approve-token``.

    Raises ``ConfigError`` when the file cannot be read or is malformed at start; later
    changes that fail are logged and the last good table stays in force.
    """

    def __init__(self, path: str | Path | None = None, *, shorthand: str | None = None) -> None:
        self.path = Path(path) if path else None
        self._fixed: dict[bytes, Principal] = {}
        if shorthand:
            self._fixed = _entry(SHORTHAND_NAME, shorthand.strip(), Role.APPROVE.value, "WATCHKEEPER_ACTIONS_APPROVE_TOKEN_FILE", {})
        self._seen: tuple[int, int, int] | None = None
        self._table: dict[bytes, Principal] = dict(self._fixed)
        if self.path is not None:
            self._load(initial=True)

    @property
    def enabled(self) -> bool:
        """Whether any token is configured (without one, only public routes answer)."""
        return bool(self._table) or self.path is not None

    def authenticate(self, authorization: bytes) -> Principal | None:
        """The principal an ``Authorization`` header value (raw bytes) proves, or ``None``.

        Any bytes are accepted, non-ASCII included: they simply match no token.
        Every stored digest is compared, so the time taken says nothing about which
        entry came close.
        """
        if self.path is not None:
            self._load(initial=False)
        token = _bearer(authorization)
        if token is None:
            return None
        digest = hashlib.sha256(token).digest()
        found = None
        for known, principal in self._table.items():
            if hmac.compare_digest(known, digest):
                found = principal
        return found

    def _load(self, *, initial: bool) -> None:
        assert self.path is not None
        try:
            st = os.stat(self.path)
            seen = (st.st_ino, st.st_mtime_ns, st.st_size)
            if seen == self._seen:
                return
            table = self._read(st)
        except FileNotFoundError:
            # fail closed, not down: an optional Kubernetes Secret not created yet; every
            # token is refused until the file appears (it is looked for on each request)
            if initial or self._seen is not None:
                _log.warning("approvers file not found; the HTTP API refuses every token until it exists", path=str(self.path))
            self._table, self._seen = dict(self._fixed), None
            return
        except (OSError, ConfigError) as exc:
            error = exc if isinstance(exc, ConfigError) else ConfigError(f"cannot read {self.path}: {exc.strerror}", _WHERE)
            if initial:
                raise error from None
            _log.error("approvers file not reloaded; the previous tokens stay in force", error=str(error))
            self._seen = None  # try again on the next request
            return
        merged = dict(table)
        for digest, principal in self._fixed.items():
            if digest in merged:
                _log.error("approvers file not reloaded", error=f"{merged[digest].name!r} has the shorthand approve token")
                if initial:
                    raise ConfigError(f"approver {merged[digest].name!r} has the same token as WATCHKEEPER_ACTIONS_APPROVE_TOKEN_FILE", _WHERE)
                return
            merged[digest] = principal
        self._table, self._seen = merged, seen
        if not initial:
            _log.info("approvers file reloaded", approvers=len(table))

    def _read(self, st: os.stat_result) -> dict[bytes, Principal]:
        assert self.path is not None
        where = f"{_WHERE} ({self.path})"
        if st.st_mode & stat.S_IWOTH:
            raise ConfigError("others may write this file, so anyone could add a token; chmod o-w it", where)
        if st.st_mode & stat.S_IROTH:
            _log.warning("the approvers file is readable by every user; chmod o-r it", path=str(self.path))
        if st.st_size > _MAX_FILE_BYTES:
            raise ConfigError(f"larger than {_MAX_FILE_BYTES} bytes", where)
        with open(self.path, "rb") as fh:
            data = fh.read(_MAX_FILE_BYTES + 1)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError("not UTF-8 text", where) from None
        return parse_approvers(text, where)
