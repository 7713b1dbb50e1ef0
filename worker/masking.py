"""Masking of personal data: phone numbers become ``150****0000``.

Every string that may reach a log line, CLI output, file, exception message, Sentry event or a
task view goes through :func:`mask_text`. Numbers are masked wherever they appear inside text
(URLs, JSON, messages, CSV rows), for mobiles and for landlines, in every spelling that
:func:`worker.vendor.normalize_phone` accepts and more:

- separators between any two digits: any whitespace (``138 0013 8000``, ideographic space),
  hyphens and dashes (``138-0013-8001``, ``0571-8899-2688``, full-width ``－``);
- a ``+86`` / ``0086`` / ``86`` prefix, spaced or not, with the landline's trunk ``0`` or
  without it (``+86 571 8899 2688``);
- full-width digits and plus sign (``１３８００１３８０００``, ``＋８６``).

A masked number is always written in the canonical form of its digits (``138****8000``), so the
mask shows the first three and last four digits and nothing of the spelling. A run that is part
of a longer run of adjacent digits (a 16-digit subscription id, a millisecond timestamp) stays
readable, as before.
"""

from __future__ import annotations

import re
from typing import Any

# Digits: ASCII and full-width. Separators: whitespace and the dashes (ASCII hyphen, U+2010-U+2015,
# minus sign, full-width hyphen-minus). Separators are possessive: they never backtrack.
_DIGIT = "[0-9\uff10-\uff19]"
_SEP = "[\\s\\-\u2010-\u2015\u2212\uff0d]*+"


def _d(chars: str) -> str:
    """A digit class for ASCII ``chars`` (``"3-9"``) and their full-width twins."""
    full = "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c for c in chars)
    return f"[{chars}{full}]"


def _run(n: str) -> str:
    """``n`` more digits (``"{9}"``), each after optional separators."""
    return f"(?:{_SEP}{_DIGIT}){n}"


_PREFIX = f"(?:(?:[+\uff0b]{_SEP}|{_d('0')}{_SEP}{_d('0')}{_SEP})?{_d('8')}{_SEP}{_d('6')}{_SEP})"
_MOBILE = f"{_d('1')}{_SEP}{_d('3-9')}{_run('{9}')}"
_LANDLINE = f"{_d('0')}{_run('{9,11}')}"
# After a country prefix a landline may drop its trunk 0: Beijing 10, then 2x and 3xx-9xx.
_NATIONAL = f"(?:{_d('1')}{_SEP}{_d('0')}|{_d('2-9')}{_SEP}{_DIGIT}){_run('{7,9}')}"
_NOT_DIGIT_BEFORE = f"(?<!{_DIGIT})"
_NOT_DIGIT_AFTER = f"(?!{_DIGIT})"

# Every match starts with one of these: a lookahead on them first lets the regex engine skip
# ahead to candidate positions (about 4x faster on a typical log line than without it).
_FIRST = "[+\uff0b018\uff10\uff11\uff18]"
_PHONE_RUN = re.compile(
    f"(?={_FIRST}){_NOT_DIGIT_BEFORE}(?:{_PREFIX}(?P<national>{_NATIONAL})|{_PREFIX}?(?P<number>{_MOBILE}|{_LANDLINE}))"
    f"{_NOT_DIGIT_AFTER}"
)
_TO_ASCII = {0xFF10 + i: str(i) for i in range(10)}
_NOT_ASCII_DIGITS = re.compile("[^0-9]")
_FIELDS = {"phonenoa", "phonenob", "phonenox", "secretno", "phone_no_a", "phone_no_b", "phone_no_x"}


def digits_of(text: str) -> str:
    """The ASCII digits of ``text``, full-width digits converted, everything else dropped."""
    return _NOT_ASCII_DIGITS.sub("", text.translate(_TO_ASCII))


def mask_number(number: str) -> str:
    """Mask one number, keeping the first three and last four digits: ``150****0000``.

    A number in any spelling (``+86 150-0000-0000``) is masked as its digits (without the
    country prefix); any other text keeps only its first three and last four characters."""
    m = _PHONE_RUN.fullmatch(number.strip())
    if m is not None:
        return _mask_match(m)
    digits = number.strip()
    if len(digits) <= 7:
        return "*" * len(digits)
    return digits[:3] + "*" * (len(digits) - 7) + digits[-4:]


def _mask_digits(digits: str) -> str:
    return digits[:3] + "*" * (len(digits) - 7) + digits[-4:]


def _mask_match(m: re.Match[str]) -> str:
    number = m.group("number")
    if number is not None:
        return _mask_digits(digits_of(number))
    return _mask_digits("0" + digits_of(m.group("national")))


def mask_text(text: str) -> str:
    """Mask every phone-number-looking run of digits inside ``text``, in any spelling."""
    return _PHONE_RUN.sub(_mask_match, text)


def mask_obj(obj: Any) -> Any:
    """Return a copy of a JSON-like object with every phone number masked."""
    if isinstance(obj, str):
        return mask_text(obj)
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            shown = mask_text(k) if isinstance(k, str) else k
            if isinstance(v, str) and str(k).replace("-", "_").lower() in _FIELDS:
                out[shown] = mask_number(v) if v else v
            else:
                out[shown] = mask_obj(v)
        return out
    if isinstance(obj, list | tuple):
        return [mask_obj(v) for v in obj]
    return obj
