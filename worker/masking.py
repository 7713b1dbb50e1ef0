"""Masking of personal data: phone numbers become ``150****0000``.

Every string that may reach a log line, CLI output, exception message, Sentry event or a task
view goes through :func:`mask_text`. Numbers are masked wherever they appear inside text (URLs,
JSON, messages), with or without a ``+86``/``86`` prefix, for mobiles and for landlines.
"""

from __future__ import annotations

import re
from typing import Any

# Mobiles (``1[3-9]`` + 9 digits) and landlines (``0`` + 9-11 digits), optionally behind a
# ``+86``/``86``/``0086`` prefix, and not part of a longer digit run. Subscription ids (16
# digits), unix timestamps and request ids stay readable.
_PHONE_RUN = re.compile(r"(?<![0-9])(?:(?:\+|00)?86[ -]?)?(1[3-9]\d{9}|0\d{9,11})(?![0-9])")
_FIELDS = {"phonenoa", "phonenob", "phonenox", "secretno", "phone_no_a", "phone_no_b", "phone_no_x"}


def mask_number(number: str) -> str:
    """Mask one number, keeping the first three and last four digits: ``150****0000``."""
    digits = number.strip()
    if len(digits) <= 7:
        return "*" * len(digits)
    return digits[:3] + "*" * (len(digits) - 7) + digits[-4:]


def _mask_match(m: re.Match[str]) -> str:
    return mask_number(m.group(1))


def mask_text(text: str) -> str:
    """Mask every phone-number-looking run of digits inside ``text``."""
    return _PHONE_RUN.sub(_mask_match, text)


def mask_obj(obj: Any) -> Any:
    """Return a copy of a JSON-like object with every phone number masked."""
    if isinstance(obj, str):
        return mask_text(obj)
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if isinstance(v, str) and str(k).replace("-", "_").lower() in _FIELDS:
                out[k] = mask_number(v) if v else v
            else:
                out[k] = mask_obj(v)
        return out
    if isinstance(obj, list | tuple):
        return [mask_obj(v) for v in obj]
    return obj
