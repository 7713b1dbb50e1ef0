"""Personal data sealed at rest: AES-GCM under the keys of ``AXB_DATA_KEY``.

When ``AXB_DATA_KEY`` is set, every field that holds phone numbers or a signed request (a
record's ``request``, ``inflight`` and ``result``, a dead letter's ``request``) is written
sealed and read back unsealed, here and only here: :func:`seal` at the boundaries where fields
are written, :func:`unseal` where they are read. Lua scripts only copy sealed blobs.

- ``AXB_DATA_KEY`` is one or more comma-separated keys, each 32 random bytes in URL-safe
  base64 (``axb keygen`` prints one).
  The first seals; every one unseals (rotation: put the new key first, run ``axb rekey``, then
  drop the old one).
- A sealed value is ``axbenc1:<key id>:<base64url(nonce || ciphertext || tag)>``: a random 96-bit
  nonce per value; the key id (8 hex digits of a SHA-256 of the key) names the key that sealed
  it. Values without the prefix are plaintext (written before encryption was turned on) and are
  read as they are; ``axb rekey`` seals them.
- Redis holds a check value (:data:`worker.keys.DATA_KEY_CHECK`) sealed under the current key. A
  process whose key cannot open it (a wrong key, or none while Redis holds sealed data) is
  refused with :class:`DataKeyError` before it writes or works on anything
  (:func:`check_data_key`): workers refuse to start, producers and the CLI refuse the call.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from worker import keys
from worker.errors import AxbError
from worker.settings import Settings, get_settings

PREFIX = "axbenc1:"
NONCE_BYTES = 12
KEY_BYTES = 32
_CHECK_TEXT = "axb data key check"


class DataKeyError(AxbError):
    """``AXB_DATA_KEY`` is missing, malformed, or cannot open what Redis holds."""


def key_id(key: bytes) -> str:
    """8 hex digits naming a key (a one-way hash of it: the key cannot be recovered)."""
    return hashlib.sha256(b"axb-data-key-id:" + key).hexdigest()[:8]


def is_sealed(text: str) -> bool:
    return text.startswith(PREFIX)


def sealed_key_id(text: str) -> str:
    """The key id of a sealed value ('' for plaintext)."""
    return text[len(PREFIX) : len(PREFIX) + 8] if is_sealed(text) else ""


@dataclass(frozen=True)
class DataKeys:
    """The parsed ``AXB_DATA_KEY``: ``(key id, raw key)`` pairs, the first one sealing."""

    keys: tuple[tuple[str, bytes], ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> DataKeys:
        if text is None or not text.strip():
            return cls()
        out: list[tuple[str, bytes]] = []
        for i, part in enumerate(p.strip() for p in text.split(",")):
            if not part:
                continue
            try:
                raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
            except (binascii.Error, ValueError):
                raw = b""
            if len(raw) != KEY_BYTES:
                raise DataKeyError(
                    f"AXB_DATA_KEY: key {i + 1} is not 32 bytes in URL-safe base64 (make one with axb keygen)"
                )
            out.append((key_id(raw), raw))
        return cls(tuple(out))

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    @property
    def first_id(self) -> str:
        return self.keys[0][0] if self.keys else ""

    def ids(self) -> list[str]:
        return [kid for kid, _ in self.keys]

    def seal(self, text: str) -> str:
        """``text`` sealed under the first key; '' stays '' (nothing to hide, and scripts test
        fields for emptiness); plaintext when no key is set."""
        if not text or not self.keys:
            return text
        kid, raw = self.keys[0]
        nonce = os.urandom(NONCE_BYTES)
        blob = AESGCM(raw).encrypt(nonce, text.encode(), PREFIX.encode())
        return f"{PREFIX}{kid}:{base64.urlsafe_b64encode(nonce + blob).decode()}"

    def unseal(self, text: str) -> str:
        """The plaintext of a value :meth:`seal` wrote (plaintext values pass through)."""
        if not is_sealed(text):
            return text
        kid = sealed_key_id(text)
        raw = next((k for i, k in self.keys if i == kid), None)
        if raw is None:
            if not self.keys:
                raise DataKeyError(
                    f"Redis holds data sealed with key id {kid}, but AXB_DATA_KEY is not set: set it"
                )
            raise DataKeyError(
                f"Redis holds data sealed with key id {kid}, which AXB_DATA_KEY does not hold"
                f" (it holds {', '.join(self.ids())}): add that key after the first one"
            )
        try:
            data = base64.urlsafe_b64decode(text[len(PREFIX) + 9 :])
            return AESGCM(raw).decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], PREFIX.encode()).decode()
        except (InvalidTag, ValueError, binascii.Error):
            raise DataKeyError(
                f"a value sealed with key id {kid} does not open (corrupted or tampered with)"
            ) from None

    def needs_reseal(self, text: str) -> bool:
        """Whether ``axb rekey`` would rewrite ``text`` (not empty and not under the first key)."""
        if not text:
            return False
        if not self.keys:
            return is_sealed(text)
        return sealed_key_id(text) != self.first_id

    def reseal(self, text: str) -> str:
        return self.seal(self.unseal(text))


_lock = threading.Lock()
_current: tuple[Settings, DataKeys] | None = None


def data_keys(settings: Settings | None = None) -> DataKeys:
    """The keys of ``settings`` (default: the process settings), parsed once per settings object."""
    global _current
    s = settings or get_settings()
    current = _current
    if current is not None and current[0] is s:
        return current[1]
    secret = s.data_key.get_secret_value() if s.data_key is not None else None
    parsed = DataKeys.parse(secret)
    with _lock:
        _current = (s, parsed)
    return parsed


def seal(text: str) -> str:
    """Seal one field value with the process's ``AXB_DATA_KEY`` (plaintext when unset)."""
    return data_keys().seal(text)


def unseal(text: str) -> str:
    """Open one field value (plaintext passes through); :class:`DataKeyError` if it cannot."""
    return data_keys().unseal(text)


# --- the check value: a wrong or missing key is refused before anything is written -----------------

_checked: set[tuple[int, DataKeys]] = set()


def check_data_key(client: Any, settings: Settings | None = None) -> None:
    """Refuse (``DataKeyError``) a key that cannot open what Redis holds, once per client and key.

    With a key: the check value is written if absent, else opened. Without one: a check value in
    Redis means sealed data is there, which this process could neither read nor write
    consistently."""
    dk = data_keys(settings)
    tag = (id(client), dk)
    if tag in _checked:
        return
    if dk.enabled:
        # First process with a key: write the check value (NX: another process may race us, with
        # another key; whichever value is there is then checked).
        client.set(keys.DATA_KEY_CHECK, dk.seal(_CHECK_TEXT), nx=True)
    raw = client.get(keys.DATA_KEY_CHECK)
    stored = raw.decode() if isinstance(raw, bytes) else raw
    if stored and dk.unseal(stored) != _CHECK_TEXT:
        raise DataKeyError("the data key check value in Redis does not match")
    _checked.add(tag)


def write_check_value(client: Any, dk: DataKeys) -> None:
    """After a rekey: the check value under the first key (removed when no key is set)."""
    if dk.enabled:
        client.set(keys.DATA_KEY_CHECK, dk.seal(_CHECK_TEXT))
    else:
        client.delete(keys.DATA_KEY_CHECK)
    _checked.clear()


def refuse_start_without_data_key(settings: Settings) -> None:
    """A worker whose key cannot open what Redis holds stops before it takes a message: it would
    neither read the records (and so hold them) nor write what others can read. One log line,
    exit code 2 (``SystemExit`` passes through Celery's signal dispatch)."""
    from worker.runtime import get_runtime

    try:
        check_data_key(get_runtime().redis, settings)
    except DataKeyError as err:
        logging.getLogger("axb.worker").critical("refusing to start: %s", err)
        raise SystemExit(2) from None
