"""The key file that authenticates the agent's own topics (alerts, audit, state).

Records on those topics are signed (``signing.py``) with a secret every agent of a fleet
and the ``watchkeeper actions`` approver share. The secret lives in a file, never in a
setting's value, never in a log line:

* one key per line (blank lines and ``#`` comments are ignored), at least 32 characters
  each; ``openssl rand -hex 32`` makes a good one;
* the first key signs, every key verifies: to rotate, put the new key first and keep
  the old one second until nothing signed with it matters any more (checkpoints are
  rewritten every few seconds; the audit topic's retention bounds the rest), then drop
  it. Two keys at most: a third would keep a retired key trusted for no reason.

Each key is known by an id derived from it (a hash, so naming it reveals nothing).

Without a configured file the agent uses ``$XDG_STATE_HOME/watchkeeper/topic-keys``
(``~/.local/state/watchkeeper/topic-keys``) and creates it, mode 0600, on first start.
The key outlives the process on purpose: a restarted agent must still verify its own
earlier checkpoints and audit records, which an ephemeral per-process key would not.
Creation is atomic (a temporary file linked into place), so agents starting together on
one machine end up with the same key. A fleet on several machines must mount one shared
file (``WATCHKEEPER_TOPIC_KEYS_FILE``): ``watchkeeper run`` warns when it is not set.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from agent.errors import ConfigError
from agent.logs import get_logger

__all__ = ["ENV_VAR", "MIN_KEY_CHARS", "TopicKey", "TopicKeys", "default_keys_path", "load_keys", "open_keys"]

_log = get_logger(__name__)

ENV_VAR = "WATCHKEEPER_TOPIC_KEYS_FILE"
MIN_KEY_CHARS = 32
MAX_KEYS = 2
_ID_CONTEXT = b"watchkeeper topic key id\x00"


@dataclass(frozen=True, slots=True)
class TopicKey:
    """One secret and the id records name it by; ``repr`` never shows the secret."""

    key_id: str
    secret: bytes = field(repr=False)

    @classmethod
    def of(cls, secret: bytes) -> TopicKey:
        return cls(hashlib.sha256(_ID_CONTEXT + secret).hexdigest()[:16], secret)


@dataclass(frozen=True, slots=True)
class TopicKeys:
    """The keys of one key file: ``signing`` signs, every one of ``keys`` verifies.

    ``generated`` is true when the file was created by this process (a new key that no
    earlier record is signed with).
    """

    keys: tuple[TopicKey, ...]
    path: str = ""
    generated: bool = False

    def __post_init__(self) -> None:
        if not 1 <= len(self.keys) <= MAX_KEYS:
            raise ConfigError(f"a topic key file holds 1 or {MAX_KEYS} keys (the first signs), found {len(self.keys)}", self.path or None)

    @property
    def signing(self) -> TopicKey:
        return self.keys[0]

    def find(self, key_id: str) -> TopicKey | None:
        return next((k for k in self.keys if k.key_id == key_id), None)

    @classmethod
    def generate(cls) -> TopicKeys:
        """A fresh in-memory key (for tests and components built without the agent's key file)."""
        return cls((TopicKey.of(_new_secret()),))


def _new_secret() -> bytes:
    return secrets.token_hex(32).encode()


def default_keys_path(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_STATE_HOME/watchkeeper/topic-keys``, else ``~/.local/state/watchkeeper/topic-keys``."""
    env = os.environ if env is None else env
    state_home = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "watchkeeper" / "topic-keys"


def load_keys(path: str | os.PathLike[str]) -> TopicKeys:
    """The keys of an existing key file; ``ConfigError`` (naming the file, never a key) if unusable."""
    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            "no topic key file here: the agents create it on first start; point the approver and every "
            "agent at the same file", f"{ENV_VAR} {where}"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the topic key file: {getattr(exc, 'strerror', None) or type(exc).__name__}", where) from None
    keys: list[TopicKey] = []
    for number, line in enumerate(text.splitlines(), 1):
        secret = line.strip()
        if not secret or secret.startswith("#"):
            continue
        if len(secret) < MIN_KEY_CHARS:
            raise ConfigError(
                f"the key on line {number} is shorter than {MIN_KEY_CHARS} characters (make one with `openssl rand -hex 32`)",
                where,
            )
        key = TopicKey.of(secret.encode())
        if any(k.key_id == key.key_id for k in keys):
            raise ConfigError(f"the key on line {number} repeats an earlier one", where)
        keys.append(key)
    if not keys:
        raise ConfigError("the topic key file holds no key (one per line; the first signs)", where)
    return TopicKeys(tuple(keys), where)


def open_keys(path: str | os.PathLike[str] | None) -> TopicKeys:
    """The agent's keys: those of ``path`` (default :func:`default_keys_path`), created when missing.

    The new file gets one random key, mode 0600, in a directory made 0700. Written to a
    temporary file first and linked into place, so a concurrent starter either creates
    the file or reads the complete one another process created.
    """
    target = Path(path) if path else default_keys_path()
    if target.exists():
        keys = load_keys(target)
        if target.stat().st_mode & 0o004:
            _log.warning("the topic key file is readable by every user of this machine; chmod 600 it", path=str(target))
        return keys
    try:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write("# watchkeeper topic key (generated); the first key signs, all verify\n")
                fh.write(_new_secret().decode() + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.link(tmp, target)
            created = True
        except FileExistsError:
            created = False  # another process won the race: use its key
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the topic key file: {exc.strerror}; mount one and set {ENV_VAR}", str(target)
        ) from None
    keys = load_keys(target)
    return TopicKeys(keys.keys, keys.path, generated=created)
