"""worker.vendor.bind_params: the bulk producers' validation without pydantic.

It may only ever *accept*, and only what ``parse_bind_request`` accepts, with the very same
``to_json_dict()`` (order included), Expiration, fingerprint and default key; everything else is
left to pydantic (None), which then refuses it with the one error everybody sees.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker.errors import InvalidRequestError
from worker.vendor import (
    BindAxbRequest,
    bind_default_key,
    bind_fingerprint,
    bind_params,
    bind_request_json,
    parse_bind_request,
)

NOW = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)  # 16:00 in UTC+8
FORMAT = "%Y-%m-%d %H:%M:%S"

API_NAMES = [f.alias or n for n, f in BindAxbRequest.model_fields.items()]
FIELD_NAMES = list(BindAxbRequest.model_fields)

# Values of the kinds CSV and JSONL rows carry, valid and not, biased towards the valid ones so
# that the accepting path is exercised as much as the refusing one.
phones = st.one_of(
    st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True),
    st.from_regex(r"0[0-9]{9,11}", fullmatch=True),
    st.sampled_from(
        [
            "+86 138 0000 0000",
            "8613800000001",
            "008613800000002",
            " 13800000003 ",
            "138\t0000\u00a00004",
            "0571-88992688",
            "+86 571 8899 2688",
            "1380000000",
            "12345678901",
            "１３８００００００００",
            "",
            " ",
        ]
    ),
    st.integers(min_value=13_000_000_000, max_value=19_999_999_999),
)
moments = st.datetimes(min_value=datetime(2026, 11, 28), max_value=datetime(2026, 11, 30))
expirations = st.one_of(
    moments.map(lambda d: d.strftime("%Y-%m-%d %H:%M:%S")),
    moments.map(lambda d: " " + d.strftime("%Y-%m-%d %H:%M:%S") + " "),
    moments.map(lambda d: d.isoformat()),
    moments.map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%S+02:00")),
    moments.map(lambda d: d.strftime("%Y-%-m-%-d %H:%M:%S")),
    st.datetimes(min_value=datetime(2026, 11, 27), max_value=datetime(2026, 12, 1), timezones=st.just(UTC)),
    st.sampled_from(
        [
            "2026-11-28 16:01:00",  # exactly one minute ahead of NOW: refused
            "2026-11-28 16:01:01",
            "2026-02-30 10:00:00",
            "2026-11-28 24:00:00",
            "2026-11-28 10:00:60",
            "0000-01-01 00:00:00",
            "9999-12-31 23:59:59",
            "2026-11-28",
            "soon",
            "",
        ]
    ),
)
ids = st.one_of(
    st.from_regex(r"[A-Za-z0-9_:.-]{1,70}", fullmatch=True),
    st.text(max_size=70),
    st.sampled_from([" trip-1 ", "trip\t1", "trip\n1", "行程-1", "a" * 64, "a" * 65, ""]),
    st.integers(min_value=-(10**12), max_value=10**12),
)
VALUES: dict[str, Any] = {
    "PoolKey": st.one_of(
        st.from_regex(r"[A-Za-z0-9_-]{1,66}", fullmatch=True), st.sampled_from([" FC1 ", "FC 1", "", "池"])
    ),
    "PhoneNoA": phones,
    "PhoneNoB": phones,
    "Expiration": expirations,
    "PhoneNoX": phones,
    "ExpectCity": st.sampled_from(["北京", "北京市", "Hangzhou", " 杭州 ", "x" * 33, ""]),
    "IsRecordingEnabled": st.sampled_from(["true", "FALSE", "1", "0", "yes", "no", "maybe", "", True, 0, 2]),
    "OutId": ids,
    "OutOrderId": ids,
    "CallDisplayType": st.sampled_from(["1", 1, 1.0, "2", " 1 ", "", "x", True]),
    "CallRestrict": st.sampled_from(["CONTROL_AX_DISABLE", " CONTROL_BX_DISABLE ", "control_ax_disable", ""]),
    "CallTimeout": st.one_of(st.integers(-5, 200), st.sampled_from(["15", " 10 ", "5.0", 10.0, 10.5, ""])),
    "ASRStatus": st.sampled_from(["true", "0", "", "nope", False]),
    "ASRModelId": ids,
    "RingConfig": st.sampled_from(['{"a": 1}', "[1, 2]", "{", "x" * 1025, "\ud800", "", "null"]),
    "DtmfConfig": st.sampled_from(['{"k": "v"}', "not json", "", "1"]),
}
# Values that pass, in the forms files hold them.
VALID: dict[str, Any] = {
    "PoolKey": st.sampled_from(["FC100000001", "FC_2", " FC-3 ", "fc4"]),
    "PhoneNoA": st.sampled_from(["13800000000", "+86 138 0000 0001", "057188992688", 13800000002]),
    "PhoneNoB": st.sampled_from(["13900000000", "8613900000001", "0086 10 8888 9999", " 13900000002"]),
    "Expiration": st.sampled_from(
        ["2026-11-28 18:00:00", " 2026-11-29 00:00:00", "2026-12-01T10:00:00+08:00", "2027-01-01 00:00:00"]
    ),
    "PhoneNoX": st.sampled_from(["17100000000", "", " ", "+86 171 0000 0001"]),
    "ExpectCity": st.sampled_from(["北京", "Hangzhou", " 杭州 ", ""]),
    "IsRecordingEnabled": st.sampled_from(["true", "FALSE", "1", "0", "yes", "", True]),
    "OutId": st.one_of(st.from_regex(r"[A-Za-z0-9_:.-]{1,64}", fullmatch=True), st.just(" 行程 7 ")),
    "OutOrderId": st.sampled_from(["o-1", " o 2 ", "订单3", "", 42]),
    "CallDisplayType": st.sampled_from(["1", 1, " 1 ", ""]),
    "CallRestrict": st.sampled_from(["CONTROL_AX_DISABLE", " CONTROL_BX_DISABLE ", ""]),
    "CallTimeout": st.sampled_from(["15", " 10 ", 5, 20, "20", ""]),
    "ASRStatus": st.sampled_from(["true", "0", "", False]),
    "ASRModelId": st.sampled_from(["m1", "model 2", ""]),
    "RingConfig": st.sampled_from(['{"a": 1}', "[1, 2]", "", "null", '{"x":\n"y"}']),
    "DtmfConfig": st.sampled_from(['{"k": "v"}', "", "1"]),
}
junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=30),
    st.lists(st.integers(), max_size=2),
)


def base_row(i: int = 0) -> dict[str, Any]:
    return {
        "PoolKey": "FC100000001",
        "PhoneNoA": f"1380000{i:04d}",
        "PhoneNoB": f"1390000{i:04d}",
        "Expiration": "2026-11-28 18:00:00",
        "OutId": f"trip-{i}",
    }


def rarely(draw: st.DrawFn) -> bool:
    return draw(st.integers(0, 9)) == 5  # not 0: hypothesis favours the ends of a range


@st.composite
def rows(draw: st.DrawFn) -> dict[str, Any]:
    """A valid row with some fields changed, dropped, renamed to field names, reordered, or junk."""
    data = {} if rarely(draw) else base_row()
    for name in draw(st.lists(st.sampled_from(API_NAMES), max_size=6)):
        data[name] = draw(VALUES[name] if rarely(draw) or rarely(draw) else VALID[name])
    if data and rarely(draw):
        data.pop(draw(st.sampled_from(list(data))))
    if data and draw(st.booleans()):
        # One key by its field name (sometimes as well as by its API name).
        alias = draw(st.sampled_from(list(data)))
        field = FIELD_NAMES[API_NAMES.index(alias)]
        data[field] = data[alias] if rarely(draw) else data.pop(alias)
    if rarely(draw):
        data[draw(st.sampled_from(["Extra", "phoneNoA", "", "IdempotencyKey"]))] = draw(junk)
    if data and rarely(draw):
        data[draw(st.sampled_from(list(data)))] = draw(junk)
    items = list(data.items())
    if draw(st.booleans()):
        items = draw(st.permutations(items))
    return dict(items)


def slow(data: Any, **kw: Any) -> BindAxbRequest | InvalidRequestError:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return parse_bind_request(data, **kw)
        except InvalidRequestError as err:
            return err


def assert_same(data: Any, **kw: Any) -> bool:
    """The fast path agrees with pydantic on ``data``; returns whether it decided by itself."""
    fast = bind_params(data, **kw)
    ref = slow(data, **kw)
    if isinstance(ref, InvalidRequestError):
        assert fast is None, f"fast path accepted what pydantic refuses: {ref}"
        return False
    if fast is None:
        return False
    params, expires_ms = fast
    want = ref.to_json_dict()
    assert list(params.items()) == list(want.items())
    assert expires_ms == int(ref.expiration.timestamp() * 1000)
    # The stored forms, against the formulas the producer used before the fast path.
    assert bind_request_json(params) == json.dumps(want, ensure_ascii=False, separators=(",", ":"))
    canonical = json.dumps(ref.to_api_params(), sort_keys=True, ensure_ascii=False)
    assert bind_fingerprint(params) == hashlib.sha256(canonical.encode()).hexdigest() == ref.fingerprint()
    assert bind_default_key(params) == ref.default_idempotency_key()
    return True


FUZZ = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(data=rows(), check_future=st.booleans())
def test_the_fast_path_accepts_only_what_pydantic_accepts_with_the_same_request(
    data: dict[str, Any], check_future: bool
) -> None:
    assert_same(data, now=NOW, check_future=check_future)


@FUZZ
@given(
    data=st.dictionaries(
        st.sampled_from([*API_NAMES, *FIELD_NAMES, "Extra"]), st.one_of(junk, *VALUES.values())
    )
)
def test_arbitrary_mappings_never_get_a_different_decision(data: dict[str, Any]) -> None:
    assert_same(data, now=NOW)
    assert_same(data, check_future=False)


@settings(max_examples=300, deadline=None)
@given(
    a=st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True),
    b=st.from_regex(r"0[0-9]{9,11}", fullmatch=True),
    out_id=st.one_of(
        st.none(), st.text(st.characters(codec="utf-8", categories=["L", "N", "P"]), max_size=64)
    ),
    when=st.datetimes(min_value=datetime(2026, 11, 28, 17), max_value=datetime(2100, 1, 1)),
)
def test_csv_rows_of_every_shape_take_the_fast_path(
    a: str, b: str, out_id: str | None, when: datetime
) -> None:
    """What backfills are made of decides without pydantic, and exactly as pydantic does."""
    data = {"PoolKey": "FC1", "PhoneNoA": a, "PhoneNoB": b, "Expiration": when.strftime(FORMAT)}
    if out_id is not None:
        data["OutId"] = out_id
    decided = assert_same(data, now=NOW)
    assert decided or isinstance(slow(data, now=NOW), InvalidRequestError)


def test_the_common_rows_are_decided_without_pydantic() -> None:
    full = {
        **base_row(7),
        "PhoneNoX": "17100000000",
        "ExpectCity": "杭州",
        "IsRecordingEnabled": "true",
        "OutOrderId": "order-7",
        "CallDisplayType": "1",
        "CallRestrict": "CONTROL_BX_DISABLE",
        "CallTimeout": "15",
        "ASRStatus": "false",
        "ASRModelId": "m-1",
        "RingConfig": '{"AXB": "ring"}',
        "DtmfConfig": "{}",
    }
    for data in (
        base_row(1),
        full,
        {FIELD_NAMES[API_NAMES.index(k)]: v for k, v in base_row(2).items()},
        dict(reversed(full.items())),
    ):
        assert assert_same(data, now=NOW), data


@pytest.mark.parametrize(
    ("over", "field", "code"),
    [
        ({"PhoneNoA": "12345"}, "PhoneNoA", "isv.MOBILE_NUMBER_ILLEGAL"),
        ({"PhoneNoB": "13800000001"}, "PhoneNoB", "isv.INVALID_PARAMETERS"),
        ({"Expiration": "2026-11-28 16:00:30"}, "Expiration", "isv.EXPIRE_DATE_ILLEGAL"),
        ({"Expiration": ""}, "Expiration", "isv.EXPIRE_DATE_ILLEGAL"),
        ({"PoolKey": "FC 1"}, "PoolKey", "isv.INVALID_PARAMETERS"),
        ({"OutId": "x" * 65}, "OutId", "isv.INVALID_PARAMETERS"),
        ({"CallTimeout": "181"}, "CallTimeout", "isv.INVALID_PARAMETERS"),
        ({"ExpectCity": "北京市"}, "ExpectCity", "isv.INVALID_PARAMETERS"),
        ({"Extra": "1"}, "Extra", "isv.INVALID_PARAMETERS"),
    ],
)
def test_refusals_are_left_to_pydantic(over: dict[str, Any], field: str, code: str) -> None:
    data = {**base_row(1), "PhoneNoA": "13800000001", **over}
    assert bind_params(data, now=NOW) is None
    err = slow(data, now=NOW)
    assert isinstance(err, InvalidRequestError) and (err.field, err.code) == (field, code)


def test_a_call_timeout_pydantic_warns_about_is_left_to_it() -> None:
    assert bind_params({**base_row(), "CallTimeout": "30"}, now=NOW) is None
    assert bind_params({**base_row(), "CallTimeout": "20"}, now=NOW) is not None


def test_the_future_check_uses_the_clock_or_the_given_now() -> None:
    row = {
        **base_row(),
        "Expiration": (datetime.now(UTC) + timedelta(hours=8, minutes=2)).strftime("%Y-%m-%d %H:%M:%S"),
    }
    assert bind_params(row) is not None
    assert bind_params(row, now=datetime.now(UTC) + timedelta(minutes=1, seconds=30)) is None
    assert bind_params({**base_row(), "Expiration": "2020-01-01 00:00:00"}, check_future=False) is not None


def test_a_key_given_by_both_names_is_left_to_pydantic() -> None:
    assert bind_params({**base_row(), "phone_no_a": "13800000000"}, now=NOW) is None
    assert bind_params({**base_row(), "PhoneNoX": "", "phone_no_x": "17100000000"}, now=NOW) is None
    assert bind_params({**base_row(), "PhoneNoX": "", "phone_no_x": ""}, now=NOW) is None


def test_non_mappings_and_models_are_left_to_pydantic() -> None:
    r = parse_bind_request(base_row(), now=NOW)
    assert bind_params(r) is None and bind_params([("PoolKey", "x")]) is None and bind_params(None) is None
