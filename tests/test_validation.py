"""BindAxb requests are validated at the door, naming the field and the vendor code; never echoing numbers."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.errors import InvalidRequestError
from worker.vendor import CST, CallTimeoutWarning, normalize_phone, parse_bind_request

NOW = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)  # 16:00 in UTC+8


def req(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "PoolKey": "FC100000001",
        "PhoneNoA": "13800000000",
        "PhoneNoB": "13900000000",
        "Expiration": "2026-11-28 18:00:00",
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def problem(**over: object) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as info:
        parse_bind_request(req(**over), now=NOW)
    return info.value


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("13800000000", "13800000000"),
        ("+8613800000000", "13800000000"),
        ("8613800000000", "13800000000"),
        ("008613800000000", "13800000000"),
        (" 138 0000 0000 ", "13800000000"),
        ("057188992688", "057188992688"),
        ("01088889999", "01088889999"),
        ("+86 0571 8899 2688", "057188992688"),
    ],
)
def test_numbers_are_normalised_before_they_are_checked(raw: str, expected: str) -> None:
    """Spaces and +86/86/0086 prefixes go; mobiles and landlines with area code stay."""
    assert normalize_phone(raw) == expected
    assert parse_bind_request(req(PhoneNoA=raw), now=NOW).phone_no_a == expected


@pytest.mark.parametrize(
    "raw", ["12000000000", "1380000000", "138000000000", "0571-88992688", "abc", "+1 555 0100", "", "057188"]
)
def test_illegal_numbers_are_refused_with_mobile_number_illegal(raw: str) -> None:
    """Wrong prefix, length, hyphens or letters: PhoneNoA and isv.MOBILE_NUMBER_ILLEGAL."""
    err = problem(PhoneNoA=raw)
    assert err.field == "PhoneNoA" and err.code == "isv.MOBILE_NUMBER_ILLEGAL"
    assert "PhoneNoA: not a mobile or landline number (isv.MOBILE_NUMBER_ILLEGAL)" in str(err) or raw == ""


def test_a_and_b_must_differ_after_normalisation() -> None:
    """+8613800000000 and 13800000000 are the same phone."""
    err = problem(PhoneNoA="+8613800000000", PhoneNoB="13800000000")
    assert err.field == "PhoneNoB" and err.code == "isv.INVALID_PARAMETERS"
    assert "13800000000" not in str(err)


def test_expiration_strings_are_china_standard_time() -> None:
    """A naive 'yyyy-MM-dd HH:mm:ss' is UTC+8 and goes to the API unchanged."""
    r = parse_bind_request(req(), now=NOW)
    assert r.expiration == datetime(2026, 11, 28, 18, 0, tzinfo=CST)
    assert r.to_api_params()["Expiration"] == "2026-11-28 18:00:00"


def test_aware_datetimes_are_converted_to_utc_plus_8() -> None:
    """10:00 UTC is 18:00 in Beijing."""
    r = parse_bind_request(req(Expiration=datetime(2026, 11, 28, 10, 0, tzinfo=UTC)), now=NOW)
    assert r.to_api_params()["Expiration"] == "2026-11-28 18:00:00"
    r2 = parse_bind_request(req(Expiration="2026-11-28T12:00:00+02:00"), now=NOW)
    assert r2.to_api_params()["Expiration"] == "2026-11-28 18:00:00"


def test_expiration_must_be_more_than_a_minute_ahead() -> None:
    """61 s ahead passes, 60 s does not; the future check can be skipped when reloading."""
    ok = (NOW + timedelta(seconds=61)).astimezone(CST).strftime("%Y-%m-%d %H:%M:%S")
    parse_bind_request(req(Expiration=ok), now=NOW)
    late = (NOW + timedelta(seconds=60)).astimezone(CST).strftime("%Y-%m-%d %H:%M:%S")
    assert problem(Expiration=late).code == "isv.EXPIRE_DATE_ILLEGAL"
    assert problem(Expiration="2026/11/28 18:00").code == "isv.EXPIRE_DATE_ILLEGAL"
    parse_bind_request(req(Expiration="2020-01-01 00:00:00"), check_future=False)


def test_call_timeout_outside_5_to_20_warns_and_outside_0_to_180_fails() -> None:
    """The API's 0-180 is accepted with a warning outside the SDK's 5-20."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert parse_bind_request(req(CallTimeout="30"), now=NOW).call_timeout == 30
    assert any(issubclass(w.category, CallTimeoutWarning) for w in caught)
    assert problem(CallTimeout=181).code == "isv.INVALID_PARAMETERS"
    assert problem(CallTimeout="ten").field == "CallTimeout"


def test_enums_json_configs_city_and_unknown_fields_are_checked() -> None:
    """CallRestrict, RingConfig, ExpectCity, CallDisplayType, extra columns."""
    assert problem(CallRestrict="CONTROL_ALL").field == "CallRestrict"
    assert problem(RingConfig="{not json").field == "RingConfig"
    assert problem(ExpectCity="北京市").field == "ExpectCity"
    assert problem(CallDisplayType=2).field == "CallDisplayType"
    assert problem(Colour="red").field == "Colour"
    assert problem(PoolKey=None).field == "PoolKey"
    assert problem(OutId="x" * 65).field == "OutId"
    ok = parse_bind_request(
        req(
            CallRestrict="CONTROL_BX_DISABLE",
            RingConfig='{"a": 1}',
            ExpectCity="北京",
            IsRecordingEnabled="False",
            ASRStatus="1",
            CallDisplayType="1",
        ),
        now=NOW,
    )
    assert ok.to_api_params() == {
        "PoolKey": "FC100000001",
        "PhoneNoA": "13800000000",
        "PhoneNoB": "13900000000",
        "Expiration": "2026-11-28 18:00:00",
        "ExpectCity": "北京",
        "IsRecordingEnabled": "false",
        "CallDisplayType": "1",
        "CallRestrict": "CONTROL_BX_DISABLE",
        "ASRStatus": "true",
        "RingConfig": '{"a": 1}',
    }


def test_csv_blank_cells_mean_not_set_and_field_names_work_too() -> None:
    """'' for an optional column is absent; snake_case names load like API names."""
    r = parse_bind_request(
        {
            "pool_key": "FC1",
            "phone_no_a": "13800000000",
            "phone_no_b": "13900000000",
            "expiration": "2026-11-28 18:00:00",
            "OutId": "",
            "CallTimeout": "",
        },
        now=NOW,
    )
    assert r.out_id is None and r.call_timeout is None


def test_idempotency_key_is_out_id_else_a_stable_hash() -> None:
    """OutId wins; without it, the same request gives the same key and fingerprint."""
    assert parse_bind_request(req(OutId="trip-1"), now=NOW).default_idempotency_key() == "trip-1"
    a = parse_bind_request(req(), now=NOW)
    b = parse_bind_request(req(PhoneNoA="+86 138 0000 0000"), now=NOW)
    assert a.default_idempotency_key() == b.default_idempotency_key()
    assert a.default_idempotency_key().startswith("h:") and a.fingerprint() == b.fingerprint()
    assert parse_bind_request(a.to_json_dict(), check_future=False) == a


def test_repr_and_masked_views_never_show_a_number() -> None:
    """repr, str and masked() show 138****0000."""
    r = parse_bind_request(req(), now=NOW)
    for text in (repr(r), str(r), str(r.masked())):
        assert "13800000000" not in text and "138****0000" in text


mobiles = st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True)


@settings(max_examples=150, deadline=None)
@given(number=mobiles, junk=st.sampled_from(["", "x", "0", "-", "12"]))
def test_no_error_message_ever_echoes_a_number(number: str, junk: str) -> None:
    """Whatever is wrong, the raw number is not in the error text."""
    with pytest.raises(InvalidRequestError) as info:
        parse_bind_request(
            req(PhoneNoA=number + junk if junk else number, PhoneNoB=number, Expiration="bad"), now=NOW
        )
    text = str(info.value) + repr(info.value) + repr(info.value.problems)
    assert number not in text


@settings(max_examples=200, deadline=None)
@given(
    data=st.dictionaries(
        st.sampled_from(
            [
                "PoolKey",
                "PhoneNoA",
                "PhoneNoB",
                "Expiration",
                "PhoneNoX",
                "CallTimeout",
                "CallRestrict",
                "IsRecordingEnabled",
                "RingConfig",
                "OutId",
                "Extra",
            ]
        ),
        st.one_of(st.text(max_size=30), st.integers(), st.none(), st.booleans(), st.floats(allow_nan=True)),
    )
)
def test_arbitrary_input_raises_only_invalid_request_error(data: dict[str, object]) -> None:
    """Anything at all either validates or raises InvalidRequestError with field and code."""
    try:
        parse_bind_request(data, now=NOW)
    except InvalidRequestError as err:
        assert err.problems and all(p.code.startswith("isv.") and p.field for p in err.problems)


def test_tz_of_naive_datetime_objects_is_utc_plus_8() -> None:
    """A naive datetime object means Beijing time, like a naive string."""
    r = parse_bind_request(req(Expiration=datetime(2026, 11, 28, 18, 0)), now=NOW)
    assert r.expiration.utcoffset() == timezone(timedelta(hours=8)).utcoffset(None)
