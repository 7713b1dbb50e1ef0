"""worker.vendor: BindAxb and related requests are validated at the door, responses parsed, numbers masked."""

from __future__ import annotations

import hashlib
import json
import warnings
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from alibabacloud_dyplsapi20170525 import models as tea_models
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from worker.errors import CODE_TABLE, InvalidRequestError
from worker.vendor import (
    CST,
    BindAxbRequest,
    BindAxbResponse,
    CallTimeoutWarning,
    QuerySubscriptionDetailRequest,
    QuerySubscriptionDetailResponse,
    SecretBindDTO,
    UnbindSubscriptionRequest,
    UpdateSubscriptionRequest,
    VendorResponse,
    format_expiration,
    normalize_phone,
    parse_bind_request,
    parse_request,
)

NOW = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)  # 16:00 in UTC+8
A, B, X = "13800000000", "13900000000", "17100000000"
ILLEGAL = "isv.MOBILE_NUMBER_ILLEGAL"
EXPIRE = "isv.EXPIRE_DATE_ILLEGAL"
INVALID = "isv.INVALID_PARAMETERS"

pytestmark = pytest.mark.filterwarnings("ignore::worker.vendor.CallTimeoutWarning")


def row(**over: Any) -> dict[str, Any]:
    """A valid BindAxb row with API names; ``None`` removes a key."""
    base: dict[str, Any] = {
        "PoolKey": "FC100000001",
        "PhoneNoA": A,
        "PhoneNoB": B,
        "Expiration": "2026-11-28 18:00:00",
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def parse(**over: Any) -> BindAxbRequest:
    return parse_bind_request(row(**over), now=NOW)


def refused(**over: Any) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as info:
        parse(**over)
    return info.value


def parse_error(data: Any, **kw: Any) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as info:
        parse_bind_request(data, now=NOW, **kw)
    return info.value


def cst(moment: datetime) -> str:
    return moment.astimezone(CST).strftime("%Y-%m-%d %H:%M:%S")


def all_text(err: InvalidRequestError) -> str:
    return str(err) + repr(err) + repr(err.problems) + err.message + str(err.args)


# --- phone numbers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("13800000000", "13800000000"),
        ("+8613800000000", "13800000000"),
        ("8613800000000", "13800000000"),
        ("008613800000000", "13800000000"),
        (" 138 0000 0000 ", "13800000000"),
        ("138\t0000\u00a00000\u3000", "13800000000"),
        ("+86 138 0000 0000", "13800000000"),
        ("19912345678", "19912345678"),
        ("057188992688", "057188992688"),
        ("01088889999", "01088889999"),
        ("0571 8899 2688", "057188992688"),
        ("+86 0571 8899 2688", "057188992688"),
        ("+86 571 8899 2688", "057188992688"),
        ("0086 10 8888 9999", "01088889999"),
    ],
)
def test_numbers_lose_whitespace_and_country_prefix_before_the_check(raw: str, expected: str) -> None:
    """Whitespace and +86/86/0086 go (a landline's trunk 0 comes back); the result is what is sent."""
    assert normalize_phone(raw) == expected
    assert parse(PhoneNoA=raw).phone_no_a == expected
    assert parse(PhoneNoA=raw).to_api_params()["PhoneNoA"] == expected


@pytest.mark.parametrize(
    "raw",
    [
        "12000000000",  # 12 is no mobile prefix
        "1380000000",  # 10 digits
        "138000000000",  # 12 digits
        "150-0000-0000",  # hyphens are never stripped
        "0571-88992688",  # the vendor's own example of an illegal landline
        "057188",  # too short for a landline
        "0571889926881",  # too long for a landline
        "abc",
        "+1 555 0100",
        "+86",
        "+86 138 0000 000",  # a mistyped mobile must not turn into a landline
        "+8612000000000",
        "138００００００００",  # full-width digits
        "138٠٠٠٠٠٠٠٠",  # Arabic-Indic digits
        "13800000000x",
    ],
)
def test_illegal_numbers_are_refused_with_mobile_number_illegal(raw: str) -> None:
    """Wrong prefix or length, hyphens, letters, non-ASCII digits: the field and isv.MOBILE_NUMBER_ILLEGAL."""
    assert normalize_phone(raw) is None
    for field in ("PhoneNoA", "PhoneNoB", "PhoneNoX"):
        err = refused(**{field: raw})
        assert (err.field, err.code) == (field, ILLEGAL)
        assert str(err) == f"{field}: not a mobile or landline number (isv.MOBILE_NUMBER_ILLEGAL)"


def test_normalize_phone_returns_none_for_anything_but_text() -> None:
    """A non-string is not a number."""
    assert normalize_phone(13800000000) is None  # type: ignore[arg-type]
    assert normalize_phone(None) is None  # type: ignore[arg-type]


def test_integer_numbers_from_json_are_read_as_their_digits() -> None:
    """A JSON number 13800000000 is the mobile 13800000000."""
    assert parse(PhoneNoA=13800000000).phone_no_a == A


def test_a_missing_or_blank_phone_is_required_with_mobile_number_illegal() -> None:
    """Absent, None and blank A/B all read 'is required' under isv.MOBILE_NUMBER_ILLEGAL."""
    for field in ("PhoneNoA", "PhoneNoB"):
        absent = {k: v for k, v in row().items() if k != field}
        for data in (absent, {**row(), field: None}, row(**{field: ""}), row(**{field: "   "})):
            err = parse_error(data)
            assert (err.field, err.code, err.problems[0].reason) == (field, ILLEGAL, "is required")


def test_phone_x_is_optional_and_blank_means_not_set() -> None:
    """PhoneNoX may be absent or an empty CSV cell; when given it is normalised like A and B."""
    assert parse().phone_no_x is None
    assert parse(PhoneNoX="").phone_no_x is None
    assert parse(PhoneNoX="+86 171 0000 0000").to_api_params()["PhoneNoX"] == X


def test_a_and_b_must_differ_after_normalisation() -> None:
    """+8613800000000 and 138 0000 0000 are the same phone: PhoneNoB, isv.INVALID_PARAMETERS."""
    err = refused(PhoneNoA="+8613800000000", PhoneNoB="138 0000 0000")
    assert (err.field, err.code) == ("PhoneNoB", INVALID)
    assert str(err) == "PhoneNoB: must differ from PhoneNoA (isv.INVALID_PARAMETERS)"
    landline = refused(PhoneNoA="+86 571 8899 2688", PhoneNoB="057188992688")
    assert landline.field == "PhoneNoB"


# --- the other required fields ----------------------------------------------------------------------


def test_every_missing_required_field_is_reported_with_its_own_code() -> None:
    """An empty row names all four required parameters, each with the code of its format check."""
    err = parse_error({})
    assert [(p.field, p.code, p.reason) for p in err.problems] == [
        ("PoolKey", INVALID, "is required"),
        ("PhoneNoA", ILLEGAL, "is required"),
        ("PhoneNoB", ILLEGAL, "is required"),
        ("Expiration", EXPIRE, "is required"),
    ]


@pytest.mark.parametrize("key", ["", "   ", "FC 1", "FC/1", "池1", "K" * 65, 5])
def test_pool_key_must_be_1_to_64_letters_digits_underscores_or_hyphens(key: Any) -> None:
    """A blank, spaced, non-ASCII, over-long or non-text PoolKey is isv.INVALID_PARAMETERS."""
    err = refused(PoolKey=key)
    assert (err.field, err.code) == ("PoolKey", INVALID)


def test_pool_key_is_stripped_and_kept() -> None:
    """Surrounding spaces of a CSV cell go; the key itself is unchanged."""
    assert parse(PoolKey=" FC_1-a ").pool_key == "FC_1-a"


# --- Expiration ----------------------------------------------------------------------------------------


def test_a_naive_expiration_string_is_china_standard_time() -> None:
    """'yyyy-MM-dd HH:mm:ss' means UTC+8, is stored aware in UTC+8 and sent unchanged."""
    r = parse()
    assert r.expiration == datetime(2026, 11, 28, 18, 0, tzinfo=CST)
    assert r.expiration.utcoffset() == timedelta(hours=8)
    assert r.to_api_params()["Expiration"] == "2026-11-28 18:00:00"


@pytest.mark.parametrize(
    "value",
    [
        datetime(2026, 11, 28, 10, 0, tzinfo=UTC),
        datetime(2026, 11, 28, 18, 0),  # naive: UTC+8
        datetime(2026, 11, 28, 5, 0, tzinfo=timezone(timedelta(hours=-5))),
        datetime(2026, 11, 28, 18, 0, 0, 999_999, tzinfo=CST),  # sub-second part dropped
        "2026-11-28T12:00:00+02:00",
        "2026-11-28T10:00:00Z",
        "2026-11-28T18:00:00",  # naive ISO: UTC+8
        " 2026-11-28 18:00:00 ",
    ],
)
def test_expirations_in_any_zone_are_converted_to_utc_plus_8(value: Any) -> None:
    """Aware datetimes and ISO strings with offsets convert; naive ones are UTC+8 already."""
    r = parse(Expiration=value)
    assert r.expiration.utcoffset() == timedelta(hours=8) and r.expiration.microsecond == 0
    assert r.to_api_params()["Expiration"] == "2026-11-28 18:00:00"


def test_expiration_must_be_more_than_a_minute_ahead() -> None:
    """61 s ahead passes; 60 s, the past, and a naive 'now' read as UTC+8 are checked alike."""
    parse(Expiration=cst(NOW + timedelta(seconds=61)))
    for late in (NOW + timedelta(seconds=60), NOW, NOW - timedelta(days=1)):
        err = refused(Expiration=cst(late))
        assert (err.field, err.code) == ("Expiration", EXPIRE)
        assert "1 minute" in err.problems[0].reason
    naive_now = datetime(2026, 11, 28, 16, 0)  # 16:00 UTC+8 == NOW
    with pytest.raises(InvalidRequestError):
        parse_bind_request(row(Expiration="2026-11-28 16:01:00"), now=naive_now)
    parse_bind_request(row(Expiration="2026-11-28 16:01:01"), now=naive_now)


def test_the_future_check_can_be_skipped_for_stored_requests() -> None:
    """check_future=False (or the validation context) accepts a past Expiration; the format still counts."""
    old = parse_bind_request(row(Expiration="2020-01-01 00:00:00"), check_future=False)
    assert old.to_api_params()["Expiration"] == "2020-01-01 00:00:00"
    direct = BindAxbRequest.model_validate(
        row(Expiration="2020-01-01 00:00:00"), context={"check_future": False}
    )
    assert direct == old
    with pytest.raises(ValidationError):
        BindAxbRequest.model_validate(row(Expiration="2020-01-01 00:00:00"))
    with pytest.raises(InvalidRequestError):
        parse_bind_request(row(Expiration="yesterday"), check_future=False)


def test_now_comes_from_the_validation_context() -> None:
    """context={'now': ...} replaces the clock."""
    later = NOW + timedelta(days=400)
    with pytest.raises(ValidationError):
        BindAxbRequest.model_validate(row(), context={"now": later})
    assert BindAxbRequest.model_validate(row(), context={"now": NOW}).expiration.hour == 18


@pytest.mark.parametrize(
    "value",
    ["2026/11/28 18:00", "28.11.2026", "tomorrow", "2026-13-01 00:00:00", "", 1_800_000_000, 3.5, ["x"]],
)
def test_unreadable_expirations_are_expire_date_illegal(value: Any) -> None:
    """Other formats, impossible dates, numbers and blanks are refused with isv.EXPIRE_DATE_ILLEGAL."""
    err = refused(Expiration=value)
    assert (err.field, err.code) == ("Expiration", EXPIRE)


def test_expirations_that_overflow_in_utc_plus_8_are_refused_not_crashed() -> None:
    """9999-12-31 23:00 at UTC-12 has no UTC+8 form: a problem, not an OverflowError."""
    err = parse_error(row(Expiration="9999-12-31T23:00:00-12:00"), check_future=False)
    assert (err.field, err.code) == ("Expiration", EXPIRE)


def test_format_expiration_writes_utc_plus_8_with_padding() -> None:
    """Aware datetimes convert, naive ones are UTC+8, years keep four digits."""
    assert format_expiration(datetime(2026, 11, 28, 10, 0, 5, tzinfo=UTC)) == "2026-11-28 18:00:05"
    assert format_expiration(datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02 03:04:05"
    assert format_expiration(datetime(999, 1, 2, 3, 4, 5, tzinfo=CST)) == "0999-01-02 03:04:05"


# --- optional parameters ----------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [(5, 5), (20, 20), ("15", 15), (" 12 ", 12), (10.0, 10)])
def test_call_timeout_inside_5_to_20_passes_silently(value: Any, expected: int) -> None:
    """The SDK's documented range, as a number or CSV text, raises no warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", CallTimeoutWarning)
        assert parse(CallTimeout=value).call_timeout == expected


@pytest.mark.parametrize("value", [0, 4, 21, 180, "30"])
def test_call_timeout_outside_5_to_20_warns_but_is_accepted(value: Any) -> None:
    """The API's 0-180 is wider than the SDK's 5-20: accepted, with a CallTimeoutWarning."""
    with pytest.warns(CallTimeoutWarning, match="outside"):
        assert parse(CallTimeout=value).call_timeout == int(value)
    assert issubclass(CallTimeoutWarning, UserWarning)


@pytest.mark.parametrize("value", [-1, 181, "181", "ten", "1.5", True, 12.5])
def test_call_timeout_outside_0_to_180_or_not_whole_fails(value: Any) -> None:
    """Out of range, fractional, boolean or non-numeric CallTimeout is isv.INVALID_PARAMETERS."""
    err = refused(CallTimeout=value)
    assert (err.field, err.code) == ("CallTimeout", INVALID)


@pytest.mark.parametrize("value", ["CONTROL_AX_DISABLE", "CONTROL_BX_DISABLE", "CONTROL_CLEAR_DISABLE"])
def test_call_restrict_accepts_the_three_api_values(value: str) -> None:
    """Each documented CallRestrict is kept and sent."""
    assert parse(CallRestrict=value).to_api_params()["CallRestrict"] == value


@pytest.mark.parametrize("value", ["CONTROL_ALL", "control_ax_disable", "AX", 1])
def test_call_restrict_refuses_anything_else(value: Any) -> None:
    """Unknown or lower-case CallRestrict is isv.INVALID_PARAMETERS."""
    err = refused(CallRestrict=value)
    assert (err.field, err.code) == ("CallRestrict", INVALID)


def test_call_display_type_can_only_be_1() -> None:
    """1 and '1' pass; 0 and 2 are refused."""
    assert parse(CallDisplayType="1").call_display_type == 1
    for bad in (0, 2, "2", "x"):
        assert (refused(CallDisplayType=bad).field, refused(CallDisplayType=bad).code) == (
            "CallDisplayType",
            INVALID,
        )


@pytest.mark.parametrize("field", ["RingConfig", "DtmfConfig"])
def test_ring_and_dtmf_configs_must_be_json_text_of_at_most_1024_characters(field: str) -> None:
    """Valid JSON passes unchanged; broken, over-long, deeply nested or non-text JSON is refused."""
    text = '{"AXB": "ring.wav", "maxLoop": 2}'
    assert parse(**{field: text}).to_api_params()[field] == text
    for bad in ("{not json", "[" * 1000, json.dumps({"k": "v" * 1020}), {"a": 1}, 5):
        err = refused(**{field: bad})
        assert (err.field, err.code) == (field, INVALID)


def test_expect_city_is_named_without_the_city_suffix() -> None:
    """北京 passes; 北京市 is refused with a reason that says what to send instead."""
    assert parse(ExpectCity="北京").expect_city == "北京"
    err = refused(ExpectCity="北京市")
    assert (err.field, err.code) == ("ExpectCity", INVALID) and "北京" in err.problems[0].reason


@pytest.mark.parametrize("field", ["OutId", "OutOrderId", "ASRModelId"])
def test_ids_are_at_most_64_characters_of_single_line_text(field: str) -> None:
    """64 characters pass, 65 do not; control characters and lone surrogates are refused."""
    assert parse(**{field: "x" * 64}).model_dump(by_alias=True)[field] == "x" * 64
    for bad in ("x" * 65, "a\nb", "a\x00b", "\ud800", 1.5):
        err = refused(**{field: bad})
        assert (err.field, err.code) == (field, INVALID)


def test_integer_ids_from_json_become_text() -> None:
    """A JSON number in OutId is the same id as its digits."""
    assert parse(OutId=12345).out_id == "12345"


def test_unknown_parameters_are_refused_by_name() -> None:
    """An extra column is isv.INVALID_PARAMETERS naming it; a column named like a number is masked."""
    err = refused(Colour="red")
    assert (err.field, err.code, err.problems[0].reason) == ("Colour", INVALID, "is not a BindAxb parameter")
    leaky = refused(**{"13700000000": "x"})
    assert "13700000000" not in all_text(leaky) and leaky.field == "137****0000"


def test_non_text_parameter_names_are_refused_without_echoing_them() -> None:
    """A key that is an integer phone number is reported masked."""
    data: dict[Any, Any] = {**row(), 13700000000: "x"}
    err = parse_error(data)
    assert err.code == INVALID and "13700000000" not in all_text(err)


def test_a_non_mapping_is_refused() -> None:
    """A list or a string is not a request."""
    for bad in (["PoolKey"], "PoolKey=FC1", None):
        err = parse_error(bad)
        assert (err.field, err.code) == ("request", INVALID)


# --- CSV rows ---------------------------------------------------------------------------------------------


def test_csv_rows_of_strings_load_directly() -> None:
    """Every cell is text: booleans in any spelling, integers, and blanks meaning 'not set'."""
    cells = {
        "PoolKey": "FC100000001",
        "PhoneNoA": "13800000000",
        "PhoneNoB": "13900000000",
        "Expiration": "2026-11-28 18:00:00",
        "PhoneNoX": "",
        "ExpectCity": "",
        "IsRecordingEnabled": "True",
        "OutId": "",
        "OutOrderId": "",
        "CallDisplayType": "",
        "CallRestrict": "",
        "CallTimeout": "15",
        "ASRStatus": "0",
        "ASRModelId": "",
        "RingConfig": "",
        "DtmfConfig": "",
    }
    r = parse_bind_request(cells, now=NOW)
    assert r.is_recording_enabled is True and r.asr_status is False and r.call_timeout == 15
    assert r.phone_no_x is None and r.out_id is None and r.ring_config is None
    assert set(r.to_api_params()) == {
        "PoolKey",
        "PhoneNoA",
        "PhoneNoB",
        "Expiration",
        "IsRecordingEnabled",
        "CallTimeout",
        "ASRStatus",
    }


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        *[("true", True), ("True", True), ("TRUE", True), ("1", True), (1, True), (True, True)],
        *[("false", False), ("False", False), ("0", False), (0, False), (False, False), ("", None)],
    ],
)
def test_boolean_cells_read_true_false_1_and_0(cell: Any, expected: bool | None) -> None:
    """IsRecordingEnabled and ASRStatus accept the usual spellings."""
    r = parse(IsRecordingEnabled=cell, ASRStatus=cell)
    assert r.is_recording_enabled is expected and r.asr_status is expected


@pytest.mark.parametrize("cell", ["maybe", "2", 2, 1.0, "t"])
def test_other_boolean_cells_are_refused(cell: Any) -> None:
    """Anything else in a boolean column is isv.INVALID_PARAMETERS."""
    err = refused(IsRecordingEnabled=cell)
    assert (err.field, err.code) == ("IsRecordingEnabled", INVALID)


def test_snake_case_field_names_load_like_api_names() -> None:
    """populate_by_name: pool_key/phone_no_a/... work as well as PoolKey/PhoneNoA/..."""
    by_field = parse_bind_request(
        {"pool_key": "FC100000001", "phone_no_a": A, "phone_no_b": B, "expiration": "2026-11-28 18:00:00"},
        now=NOW,
    )
    assert by_field == parse()


def test_requests_are_frozen() -> None:
    """A validated request cannot be changed behind the validator's back."""
    r = parse()
    with pytest.raises(ValidationError):
        r.phone_no_a = B  # type: ignore[misc]


# --- output -----------------------------------------------------------------------------------------------


FULL = {
    "PoolKey": "FC100000001",
    "PhoneNoA": "+86 138 0000 0000",
    "PhoneNoB": "0571 8899 2688",
    "Expiration": "2026-11-28T10:00:00Z",
    "PhoneNoX": X,
    "ExpectCity": "杭州",
    "IsRecordingEnabled": "True",
    "OutId": "trip-1",
    "OutOrderId": "order-1",
    "CallDisplayType": 1,
    "CallRestrict": "CONTROL_AX_DISABLE",
    "CallTimeout": "15",
    "ASRStatus": False,
    "ASRModelId": "m-1",
    "RingConfig": '{"AXB": "ring.wav"}',
    "DtmfConfig": '{"validKey": "1,2"}',
}


def test_to_api_params_is_exactly_what_is_signed() -> None:
    """API names, set fields only, normalised numbers, true/false, integers as text, UTC+8 Expiration."""
    assert parse_bind_request(FULL, now=NOW).to_api_params() == {
        "PoolKey": "FC100000001",
        "PhoneNoA": "13800000000",
        "PhoneNoB": "057188992688",
        "Expiration": "2026-11-28 18:00:00",
        "PhoneNoX": "17100000000",
        "ExpectCity": "杭州",
        "IsRecordingEnabled": "true",
        "OutId": "trip-1",
        "OutOrderId": "order-1",
        "CallDisplayType": "1",
        "CallRestrict": "CONTROL_AX_DISABLE",
        "CallTimeout": "15",
        "ASRStatus": "false",
        "ASRModelId": "m-1",
        "RingConfig": '{"AXB": "ring.wav"}',
        "DtmfConfig": '{"validKey": "1,2"}',
    }
    assert parse().to_api_params() == {
        "PoolKey": "FC100000001",
        "PhoneNoA": A,
        "PhoneNoB": B,
        "Expiration": "2026-11-28 18:00:00",
    }


def test_api_names_match_the_official_sdk() -> None:
    """The Tea SDK's BindAxbRequest.to_map() with the same values equals our to_json_dict()."""
    r = parse_bind_request(FULL, now=NOW)
    tea_names = {"asr_status": "asrstatus", "asr_model_id": "asrmodel_id"}
    values = r.model_dump(mode="json", exclude_none=True)
    tea = tea_models.BindAxbRequest(**{tea_names.get(k, k): v for k, v in values.items()})
    assert tea.to_map() == r.to_json_dict()


def test_to_json_dict_is_json_and_round_trips() -> None:
    """to_json_dict survives json.dumps and reloads (without the future check) into an equal request."""
    r = parse_bind_request(FULL, now=NOW)
    data = json.loads(json.dumps(r.to_json_dict(), ensure_ascii=False))
    assert data["Expiration"] == "2026-11-28 18:00:00" and data["CallTimeout"] == 15
    again = parse_bind_request(data, check_future=False)
    assert again == r and again.to_api_params() == r.to_api_params()


def test_an_instance_is_returned_as_is_without_the_future_check_and_rechecked_with_it() -> None:
    """parse_bind_request(request) re-applies the one-minute rule only when asked."""
    r = parse()
    assert parse_bind_request(r, check_future=False) is r
    assert parse_bind_request(r, now=NOW) == r
    with pytest.raises(InvalidRequestError) as info:
        parse_bind_request(r, now=NOW + timedelta(hours=2))
    assert info.value.code == EXPIRE


def test_idempotency_key_is_out_id_when_set() -> None:
    """OutId is the caller's own business key."""
    assert parse(OutId="trip-1").default_idempotency_key() == "trip-1"


def test_idempotency_key_without_out_id_hashes_pool_a_b_and_expiration() -> None:
    """'h:' + the first 32 hex digits of sha256('PoolKey|A|B|Expiration'), over normalised values."""
    expected = "h:" + hashlib.sha256(f"FC100000001|{A}|{B}|2026-11-28 18:00:00".encode()).hexdigest()[:32]
    assert parse().default_idempotency_key() == expected
    same = parse(PhoneNoA="+86 138 0000 0000", Expiration=datetime(2026, 11, 28, 10, tzinfo=UTC))
    assert same.default_idempotency_key() == expected
    assert parse(PhoneNoB="13900000001").default_idempotency_key() != expected
    assert parse(OutOrderId="o-2").default_idempotency_key() == expected  # not part of the key


def test_fingerprint_is_sha256_of_the_canonical_api_params() -> None:
    """Stable across spellings of the same call, different for any change in what is sent."""
    r = parse()
    canonical = json.dumps(r.to_api_params(), sort_keys=True, ensure_ascii=False)
    assert r.fingerprint() == hashlib.sha256(canonical.encode()).hexdigest()
    assert parse(PhoneNoA="0086 138 0000 0000", CallTimeout="").fingerprint() == r.fingerprint()
    assert parse_bind_request(r.to_json_dict(), check_future=False).fingerprint() == r.fingerprint()
    changed = {parse(OutOrderId="o-1").fingerprint(), parse(CallTimeout=10).fingerprint(), r.fingerprint()}
    assert len(changed) == 3


# --- masking ------------------------------------------------------------------------------------------------


def test_repr_str_and_masked_never_show_a_number() -> None:
    """Phone fields show 138****0000, and numbers inside other text are masked too."""
    r = parse_bind_request({**FULL, "OutId": f"call-{A}"}, now=NOW)
    for text in (repr(r), str(r), repr(r.masked()), f"{r!r}", f"{r}"):
        for number in (A, "057188992688", X):
            assert number not in text
        assert "138****0000" in text
    assert r.masked()["PhoneNoA"] == "138****0000" and r.masked()["PhoneNoX"] == "171****0000"
    assert r.masked()["Expiration"] == "2026-11-28 18:00:00"


def test_errors_are_not_chained_to_the_pydantic_error() -> None:
    """The ValidationError holds the inputs: it is neither the cause nor the shown context."""
    err = refused(PhoneNoA=A, PhoneNoB=A)
    assert err.__cause__ is None and err.__suppress_context__


def test_direct_construction_errors_hide_their_input() -> None:
    """Even pydantic's own ValidationError does not quote a number (hide_input_in_errors)."""
    with pytest.raises(ValidationError) as info:
        BindAxbRequest(PoolKey="FC1", PhoneNoA=A, PhoneNoB=f"{B}-", Expiration="2030-01-01 00:00:00")
    assert B not in str(info.value) and B not in repr(info.value)


mobiles = st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True)
landlines = st.from_regex(r"0[1-9][0-9]{8,10}", fullmatch=True)
numbers = st.one_of(mobiles, landlines)


@settings(max_examples=200, deadline=None)
@given(a=numbers, b=numbers, x=numbers, prefix=st.sampled_from(["", "+86", "86", "0086", "+86 "]))
def test_valid_numbers_never_appear_raw_in_a_repr(a: str, b: str, x: str, prefix: str) -> None:
    """Whatever the numbers, repr, str and masked() of the request hide them."""
    assume(a != b)
    r = parse(PhoneNoA=prefix + a, PhoneNoB=b, PhoneNoX=x)
    assert (r.phone_no_a, r.phone_no_b, r.phone_no_x) == (a, b, x)
    text = repr(r) + str(r) + json.dumps(r.masked(), ensure_ascii=False)
    for number in (a, b, x):
        assert number not in text


@settings(max_examples=200, deadline=None)
@given(
    number=numbers,
    junk=st.sampled_from(["", "x", "0", "-", "12", "-1"]),
    other=st.sampled_from(["PhoneNoB", "PhoneNoX", "OutId", "Extra", "RingConfig"]),
)
def test_no_error_ever_echoes_a_number(number: str, junk: str, other: str) -> None:
    """Bad, duplicated or misplaced numbers: the raw digits are in no error text or problem."""
    data = row(PhoneNoA=number + junk, Expiration="bad", CallTimeout=number)
    data[other] = number if other != "RingConfig" else "{" + number
    err = parse_error(data)
    assert number not in all_text(err)


# --- fuzzing ------------------------------------------------------------------------------------------------

BIND_FIELDS = [
    "PoolKey",
    "PhoneNoA",
    "PhoneNoB",
    "Expiration",
    "PhoneNoX",
    "ExpectCity",
    "IsRecordingEnabled",
    "OutId",
    "OutOrderId",
    "CallDisplayType",
    "CallRestrict",
    "CallTimeout",
    "ASRStatus",
    "ASRModelId",
    "RingConfig",
    "DtmfConfig",
    "Extra",
]
anything = st.one_of(
    st.text(max_size=40),
    st.text(alphabet="0123456789 +-:TZ", max_size=25),
    st.integers(),
    st.floats(allow_nan=True),
    st.booleans(),
    st.none(),
    st.datetimes(timezones=st.one_of(st.none(), st.timezones())),
    st.lists(st.integers(), max_size=2),
)


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(BIND_FIELDS), value=anything)
def test_any_value_in_any_field_validates_or_raises_invalid_request_error(field: str, value: Any) -> None:
    """One arbitrary value in an otherwise valid row: a request, or problems with a known vendor code."""
    try:
        r = parse_bind_request(
            row(**{field: value}) if value is not None else {**row(), field: None}, now=NOW
        )
    except InvalidRequestError as err:
        assert err.problems
        assert all(p.field and p.code in CODE_TABLE and p.reason for p in err.problems)
    else:
        # Accepted: what would be stored (its JSON form) is valid and parses back to the same request.
        assert parse_bind_request(r.to_json_dict(), check_future=False) == r


@settings(max_examples=200, deadline=None)
@given(data=st.dictionaries(st.sampled_from(BIND_FIELDS), anything, max_size=8))
def test_any_row_at_all_validates_or_raises_invalid_request_error(data: dict[str, Any]) -> None:
    """Arbitrary rows, with the future check on or off, raise nothing but InvalidRequestError."""
    for check_future in (True, False):
        try:
            r = parse_bind_request(data, now=NOW, check_future=check_future)
        except InvalidRequestError as err:
            assert all(p.code in CODE_TABLE for p in err.problems)
        else:
            r.fingerprint()
            assert parse_bind_request(r.to_json_dict(), check_future=False) == r


@settings(max_examples=100, deadline=None)
@given(
    a=numbers,
    b=numbers,
    expires=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(9000, 1, 1)),
    timeout=st.one_of(st.none(), st.integers(0, 180)),
    recording=st.one_of(st.none(), st.booleans()),
    out_id=st.one_of(
        st.none(), st.text(st.characters(codec="utf-8", categories=["L", "N"]), min_size=1, max_size=64)
    ),
)
def test_valid_requests_round_trip_through_json(
    a: str, b: str, expires: datetime, timeout: int | None, recording: bool | None, out_id: str | None
) -> None:
    """to_json_dict -> JSON -> parse_bind_request(check_future=False) gives an equal request."""
    assume(a != b)
    r = parse_bind_request(
        {
            "PoolKey": "FC1",
            "PhoneNoA": a,
            "PhoneNoB": b,
            "Expiration": expires,
            "CallTimeout": timeout,
            "IsRecordingEnabled": recording,
            "OutId": out_id,
        },
        check_future=False,
    )
    again = parse_bind_request(json.loads(json.dumps(r.to_json_dict())), check_future=False)
    assert again == r and again.fingerprint() == r.fingerprint()
    assert again.default_idempotency_key() == r.default_idempotency_key()


# --- responses ---------------------------------------------------------------------------------------------


def test_bind_response_parses_the_secret_bind_dto() -> None:
    """The vendor's example answer loads; SubsId and Extension come out as text."""
    body = {
        "RequestId": "r-1",
        "Code": "OK",
        "Message": "OK",
        "SecretBindDTO": {"SecretNo": X, "SubsId": "1000000768393849", "Extension": "130"},
    }
    resp = BindAxbResponse.model_validate(body)
    assert resp.ok and resp.secret_bind_dto is not None
    assert (resp.secret_bind_dto.secret_no, resp.secret_bind_dto.subs_id) == (X, "1000000768393849")
    assert resp.secret_bind_dto.extension == "130"
    assert resp.model_dump(by_alias=True, exclude_none=True) == body


def test_dto_extension_may_be_missing_or_null_and_ids_may_be_numbers() -> None:
    """Extension defaults to ''; a numeric SubsId becomes its digits."""
    assert SecretBindDTO.model_validate({"SecretNo": X, "SubsId": 7}).extension == ""
    dto = SecretBindDTO.model_validate({"SecretNo": X, "SubsId": 7, "Extension": None})
    assert (dto.subs_id, dto.extension) == ("7", "")


def test_business_errors_have_no_dto_and_extra_keys_are_kept() -> None:
    """Code other than OK parses; unknown vendor keys (HostId, Recommend) are kept, not refused."""
    resp = BindAxbResponse.model_validate(
        {
            "RequestId": "r",
            "Code": "isv.NO_AVAILABLE_NUMBER",
            "Message": "no",
            "HostId": "h",
            "Recommend": "u",
        }
    )
    assert not resp.ok and resp.secret_bind_dto is None
    assert resp.model_dump(by_alias=True)["HostId"] == "h"
    plain = VendorResponse.model_validate({"RequestId": "r", "Code": "OK", "Message": None})
    assert plain.ok and plain.message is None


def test_query_detail_parses_the_sdk_shape_and_masks_numbers() -> None:
    """SecretBindDetailDTO with Status, ExpireDate, numbers, NeedRecord and unknown keys."""
    detail = {
        "Status": 1,
        "ExpireDate": "2026-11-28 18:00:00",
        "PhoneNoA": A,
        "PhoneNoB": B,
        "PhoneNoX": X,
        "GmtCreate": "2026-11-28 16:00:00",
        "NeedRecord": "true",
        "SubsId": 1000000768393849,
        "Extension": "",
        "CallRestrict": "CONTROL_AX_DISABLE",
        "ASRStatus": False,
        "GroupId": 12,
        "SomethingNew": A,
    }
    resp = QuerySubscriptionDetailResponse.model_validate(
        {"RequestId": "r", "Code": "OK", "Message": "OK", "SecretBindDetailDTO": detail}
    )
    dto = resp.secret_bind_detail_dto
    assert dto is not None and dto.active and dto.need_record is True
    assert (dto.subs_id, dto.group_id, dto.phone_no_x) == ("1000000768393849", "12", X)
    for text in (repr(resp), str(resp), json.dumps(resp.masked())):
        for number in (A, B, X):
            assert number not in text
    assert not QuerySubscriptionDetailResponse.model_validate(
        {"Code": "OK", "SecretBindDetailDTO": {"Status": 0}}
    ).secret_bind_detail_dto.active  # type: ignore[union-attr]


def test_bind_response_repr_masks_the_x_number() -> None:
    """repr of a response shows 171****0000."""
    resp = BindAxbResponse.model_validate({"Code": "OK", "SecretBindDTO": {"SecretNo": X, "SubsId": "1"}})
    assert X not in repr(resp) and "171****0000" in repr(resp)
    assert resp.masked()["SecretBindDTO"]["SecretNo"] == "171****0000"


# --- UnbindSubscription / QuerySubscriptionDetail / UpdateSubscription -----------------------------


def test_unbind_request_needs_pool_secret_no_and_subs_id() -> None:
    """All three are required; SecretNo is normalised like a phone number."""
    r = parse_request(UnbindSubscriptionRequest, {"PoolKey": "FC1", "SecretNo": "+86" + X, "SubsId": 1000})
    assert r.to_api_params() == {"PoolKey": "FC1", "SecretNo": X, "SubsId": "1000"}
    assert X not in repr(r)
    with pytest.raises(InvalidRequestError) as info:
        parse_request(UnbindSubscriptionRequest, {"PoolKey": "FC1", "SubsId": ""})
    assert [(p.field, p.code) for p in info.value.problems] == [("SecretNo", ILLEGAL), ("SubsId", INVALID)]


def test_query_detail_request_needs_pool_x_and_subs_id() -> None:
    """PoolKey, PhoneNoX and SubsId go out with API names."""
    r = parse_request(QuerySubscriptionDetailRequest, {"pool_key": "FC1", "phone_no_x": X, "subs_id": "9"})
    assert r.to_api_params() == {"PoolKey": "FC1", "PhoneNoX": X, "SubsId": "9"}
    with pytest.raises(InvalidRequestError) as info:
        parse_request(QuerySubscriptionDetailRequest, {"PoolKey": "FC1", "PhoneNoX": "x", "SubsId": "9"})
    assert (info.value.field, info.value.code) == ("PhoneNoX", ILLEGAL)


UPDATE = {"PoolKey": "FC1", "SubsId": "1000", "PhoneNoX": X}


def test_update_expire_sends_the_new_expiration_in_utc_plus_8() -> None:
    """updateExpire carries Expiration, formatted and checked like BindAxb's."""
    r = parse_request(
        UpdateSubscriptionRequest,
        {**UPDATE, "OperateType": "updateExpire", "Expiration": datetime(2026, 11, 28, 10, tzinfo=UTC)},
        now=NOW,
    )
    assert r.to_api_params() == {**UPDATE, "OperateType": "updateExpire", "Expiration": "2026-11-28 18:00:00"}
    with pytest.raises(InvalidRequestError) as info:
        parse_request(
            UpdateSubscriptionRequest,
            {**UPDATE, "OperateType": "updateExpire", "Expiration": "2026-11-28 16:00:30"},
            now=NOW,
        )
    assert (info.value.field, info.value.code) == ("Expiration", EXPIRE)


@pytest.mark.parametrize(
    ("operation", "field", "value", "sent"),
    [
        ("updateExpire", "Expiration", "2026-11-28 18:00:00", "2026-11-28 18:00:00"),
        ("updateNoA", "PhoneNoA", "+86" + A, A),
        ("updateNoB", "PhoneNoB", B, B),
        ("updateCallRestrict", "CallRestrict", "CONTROL_BX_DISABLE", "CONTROL_BX_DISABLE"),
        ("updateIsRecordingEnabled", "IsRecordingEnabled", "False", "false"),
        ("updateCallDisplayType", "CallDisplayType", "1", "1"),
        ("updateAxgGroup", "GroupId", 77, "77"),
    ],
)
def test_each_update_operation_needs_its_own_parameter(
    operation: str, field: str, value: Any, sent: str
) -> None:
    """With the parameter the update validates and sends it; without it, that parameter is named."""
    r = parse_request(UpdateSubscriptionRequest, {**UPDATE, "OperateType": operation, field: value}, now=NOW)
    assert r.to_api_params()[field] == sent
    with pytest.raises(InvalidRequestError) as info:
        parse_request(UpdateSubscriptionRequest, {**UPDATE, "OperateType": operation}, now=NOW)
    assert (info.value.field, info.value.code) == (field, INVALID)
    assert operation in info.value.problems[0].reason


def test_update_out_id_may_clear_the_out_id_and_unknown_operations_are_refused() -> None:
    """updateOutId without OutId is allowed; OperateType must be a documented one."""
    r = parse_request(UpdateSubscriptionRequest, {**UPDATE, "OperateType": "updateOutId"})
    assert "OutId" not in r.to_api_params()
    for bad in ("updateEverything", "", None):
        with pytest.raises(InvalidRequestError) as info:
            parse_request(UpdateSubscriptionRequest, {**UPDATE, "OperateType": bad})
        assert (info.value.field, info.value.code) == ("OperateType", INVALID)


def test_update_requests_match_the_official_sdk_names() -> None:
    """The Tea SDK's UpdateSubscriptionRequest.to_map() equals our to_json_dict()."""
    r = parse_request(
        UpdateSubscriptionRequest,
        {**UPDATE, "OperateType": "updateNoA", "PhoneNoA": A, "ASRStatus": "true", "ASRModelId": "m"},
    )
    tea_names = {"asr_status": "asrstatus", "asr_model_id": "asrmodel_id"}
    values = r.model_dump(mode="json", exclude_none=True)
    tea = tea_models.UpdateSubscriptionRequest(**{tea_names.get(k, k): v for k, v in values.items()})
    assert tea.to_map() == r.to_json_dict()
    assert A not in repr(r)
