"""Redis replies as text: the one bytes-to-str helper for every module that reads raw replies."""

from __future__ import annotations

from typing import Any


def as_text(value: Any) -> str:
    """``bytes`` decoded as UTF-8, ``None`` as ``""``, anything else ``str(value)``."""
    if isinstance(value, bytes):
        return value.decode()
    return "" if value is None else str(value)
