"""worker.masking recognises a phone number in every spelling the validator accepts, and more.

The validator (:func:`worker.vendor.normalize_phone`) takes whitespace anywhere and a
``+86``/``0086``/``86`` prefix (a landline then with or without its trunk 0). People also write
dashes and full-width digits; the validator refuses those, so they land in the rejects file, and
must be masked there too.
"""

from __future__ import annotations

import re
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker.masking import digits_of, mask_number, mask_obj, mask_text
from worker.vendor import normalize_phone

numbers = st.one_of(
    st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True),
    st.from_regex(r"0[0-9]{9,11}", fullmatch=True),
)
WHITESPACE = [" ", "  ", "\t", "\u3000", "\xa0", "\u2009", "\n"]
DASHES = ["-", " - ", "\u2010", "\u2013", "\u2014", "\uff0d"]
FULL_WIDTH = str.maketrans("0123456789+", "".join(chr(0xFF10 + i) for i in range(10)) + "\uff0b")
# Surrounding text: anything without a digit (a number glued to other digits is a longer number).
context = st.text(
    alphabet=st.characters(blacklist_categories=("Nd", "Cs")) | st.sampled_from(",;:=/?&\"' ()[]"),
    max_size=12,
)


@st.composite
def spelled(draw: st.DrawFn, separators: list[str], *, full_width: bool) -> tuple[str, str]:
    """(the number's canonical digits, one spelling of it)."""
    number = draw(numbers)
    prefix = draw(st.sampled_from(["", "", "+86", "0086", "86", "+86 ", "+ 86 ", "0086 ", "86 "]))
    body = number
    if prefix and re.fullmatch(r"0(?:10|[2-9][0-9])[0-9]{7,9}", number) and draw(st.booleans()):
        body = number[1:]  # +86 571 8899 2688: the E.164 form drops the trunk 0 of an area code
    out = []
    for i, digit in enumerate(body):
        if i and draw(st.integers(0, 3)) == 0:
            out.append(draw(st.sampled_from(separators)))
        out.append(digit)
    text = prefix + "".join(out)
    if full_width and draw(st.booleans()):
        text = text.translate(FULL_WIDTH)
    return number, text


def shown_digits(masked: str, number: str) -> bool:
    """The only digits left in the text (its context has none) are the number's first three and
    last four: none of the middle ones, in any spelling."""
    return digits_of(masked) == number[:3] + number[-4:]


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(spelled(WHITESPACE, full_width=False), context, context)
def test_every_spelling_the_validator_accepts_is_masked_inside_any_text(
    case: tuple[str, str], left: str, right: str
) -> None:
    """Whitespace anywhere, +86/0086/86, trunk 0 or not: masked to its first 3 and last 4 digits."""
    number, spelling = case
    assert normalize_phone(spelling) == number  # a spelling the validator accepts, as this number
    masked = mask_text(left + spelling + right)
    assert shown_digits(masked, number), (spelling, masked)
    assert number[:3] + "*" * (len(number) - 7) + number[-4:] in masked


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(spelled(WHITESPACE + DASHES, full_width=True), context, context)
def test_dashes_and_full_width_digits_are_masked_too(case: tuple[str, str], left: str, right: str) -> None:
    """Spellings the validator refuses (dashes, full-width digits) reach rejects files: masked."""
    number, spelling = case
    masked = mask_text(left + spelling + right)
    assert shown_digits(masked, number), (spelling, masked)


def test_the_spellings_of_the_issue_are_masked() -> None:
    """The four spellings that reached the rejects file in issue 11, and a few more."""
    cases = {
        "138 0013 8000": "138****8000",
        "138-0013-8001": "138****8001",
        "+86 138 0013 8002": "138****8002",
        "\uff11\uff13\uff18\uff10\uff10\uff11\uff13\uff18\uff10\uff10\uff13": "138****8003",
        "\uff0b\uff18\uff16 138 0013 8004": "138****8004",
        "0086-138-0013-8005": "138****8005",
        "+86 571 8899 2688": "057*****2688",
        "0571-8899-2688": "057*****2688",
        "86 10 1234 5678": "010****5678",
    }
    for spelling, want in cases.items():
        assert mask_text(f"row: {spelling}, next") == f"row: {want}, next"
        assert mask_number(spelling) == want


def test_digit_runs_that_are_not_numbers_stay_readable() -> None:
    """Subscription ids, ms timestamps, dates and counters are not phone numbers."""
    for text in (
        "subs 1000000768393849 ts 1732961234567",
        "2026-11-30 10:18:16,123 INFO axb.bind key=trip-42 attempt 1 of 8 13 ms",
        "rows 1 2 3 4 5 6 7 8 9 10 11",
        "FC100000001 latency 0.0123 s",
    ):
        assert mask_text(text) == text


def test_masked_objects_mask_keys_and_phone_fields_in_any_spelling() -> None:
    """A phone field in a spaced spelling, and a number used as a dict key, are masked."""
    out = mask_obj({"PhoneNoA": "+86 138 0013 8000", "13900139000": ["tel 139-0013-9001"]})
    assert out == {"PhoneNoA": "138****8000", "139****9000": ["tel 139****9001"]}


def test_masking_a_log_line_stays_fast() -> None:
    """It runs on every log line: 10,000 typical lines in well under a second (about 40 ms)."""
    lines = [
        "2026-11-30 10:18:16,123 INFO axb.bind key=trip-42 status=succeeded attempts=1 latency_ms=13",
        "GET http://127.0.0.1:8088/?Action=BindAxb&PhoneNoA=13800138000&PhoneNoB=13900139000&Pool=FC1",
    ] * 5_000
    started = time.perf_counter()
    masked = [mask_text(line) for line in lines]
    assert time.perf_counter() - started < 1.0
    assert "PhoneNoA=138****8000&PhoneNoB=139****9000" in masked[1]
