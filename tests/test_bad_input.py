"""Bad input at every door: the producer API, ``axb enqueue`` and ``axb backfill``.

Whatever comes in either is accepted (a record and a message) or refused with an error that
names the field and the vendor code it would cause, never echoes a number, and loses nothing
that was accepted before or after it.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_backfill import FIELDS, good_row, queued, write_csv
from tests.test_pipeline import expiration, request
from worker.backfill import run_backfill
from worker.cli import main
from worker.errors import InvalidRequestError
from worker.producer import enqueue_bind, enqueue_binds
from worker.runtime import Runtime

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
PHONE = re.compile(r"1[3-9]\d{9}")

# Values that look like what arrives from order systems and spreadsheets, and worse.
junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**13),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(
        ["", " ", "+86 138 0013 8000", "8613800138000", "0571-12345678", "=1+1", "@SUM(A1)", "\x00", "ä"]
    ),
    st.from_regex(r"1[0-9]{8,12}", fullmatch=True),
)


@FUZZ
@given(
    over=st.dictionaries(
        st.sampled_from(
            ["PoolKey", "PhoneNoA", "PhoneNoB", "Expiration", "CallTimeout", "CallRestrict", "OutId"]
        ),
        junk,
        max_size=4,
    )
)
def test_the_producer_accepts_or_refuses_naming_field_and_code(
    pipeline: Runtime, over: dict[str, Any]
) -> None:
    """enqueue_bind with arbitrary values: a handle with a stored record, or a clear refusal."""
    req = {**request(5, OutId=None), **over}
    before = queued(pipeline)
    try:
        handle = enqueue_bind(req, idempotency_key=uuid.uuid4().hex)
    except InvalidRequestError as err:
        assert err.problems and all(p.field and p.code.startswith(("isv.", "axb.")) for p in err.problems)
        text = str(err)
        assert all(p.field in text and p.code in text for p in err.problems)
        for value in req.values():
            if isinstance(value, str) and PHONE.search(value.replace(" ", "")):
                assert PHONE.search(value.replace(" ", "")).group() not in text  # type: ignore[union-attr]
        assert queued(pipeline) == before  # nothing half-done
        return
    assert pipeline.store.get(handle.key) is not None
    assert queued(pipeline) >= before  # a new key adds a message; a repeated one may not


def test_one_bad_request_in_a_bulk_call_loses_none_of_the_others(pipeline: Runtime) -> None:
    """enqueue_binds: bad rows come back as rejections with their index; every good row is stored."""
    reqs = [request(i) for i in range(6)]
    reqs[2] = {**reqs[2], "PhoneNoA": "12345"}
    reqs[4] = {**reqs[4], "Expiration": "soon"}
    res = enqueue_binds(reqs)
    assert len(res.handles) == 4 and queued(pipeline) == 4
    assert sorted(i for i, _ in res.rejected) == [2, 4]
    assert {e.problems[0].code for _, e in res.rejected} == {
        "isv.MOBILE_NUMBER_ILLEGAL",
        "isv.EXPIRE_DATE_ILLEGAL",
    }


cli_value = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=25),
    st.from_regex(r"(\+86)? ?1[0-9]{9,11}", fullmatch=True),
    st.sampled_from(["-1", "0", "181", "abc", "2020-01-01 00:00:00", "2099-12-31 23:59:59"]),
)


@FUZZ
@given(
    field=st.sampled_from(
        ["--pool-key", "--phone-no-a", "--phone-no-b", "--expiration", "--call-timeout", "--call-restrict"]
    ),
    value=cli_value,
)
def test_axb_enqueue_never_crashes_on_arbitrary_flags(pipeline: Runtime, field: str, value: str) -> None:
    """`axb enqueue` exits 0 (accepted) or 2 (refused, field and code named); never a traceback."""
    args = {
        "--pool-key": "FC100000001",
        "--phone-no-a": "13812345678",
        "--phone-no-b": "13987654321",
        "--expiration": expiration(),
        "--key": f"fuzz-{uuid.uuid4().hex[:8]}",
        field: value,
    }
    out = CliRunner().invoke(main, ["enqueue", *[x for kv in args.items() for x in kv], "--json"])
    assert out.exception is None or isinstance(out.exception, SystemExit), out.output
    assert out.exit_code in (0, 2), out.output
    if out.exit_code == 2:
        assert re.search(
            r"(PoolKey|PhoneNo[AB]|Expiration|CallTimeout|CallRestrict|phone|expiration)", out.output
        )
        assert "isv." in out.output or "Usage" in out.output
    raw = value.replace(" ", "").removeprefix("+86")
    if PHONE.fullmatch(raw):
        assert raw not in out.output or "****" in out.output


def test_a_csv_without_a_required_column_rejects_its_rows_by_name(pipeline: Runtime, tmp_path: Path) -> None:
    """A header missing PhoneNoB: every row is rejected naming PhoneNoB; nothing is enqueued."""
    path = tmp_path / "missing.csv"
    rows = [good_row(i) for i in range(3)]
    path.write_text(
        "PoolKey,PhoneNoA,Expiration,OutId\n"
        + "".join(f"{r['PoolKey']},{r['PhoneNoA']},{r['Expiration']},{r['OutId']}\n" for r in rows)
    )
    summary = run_backfill(path)
    assert summary["enqueued"] == 0 and summary["rejected"] == 3
    text = Path(summary["rejects_file"]).read_text()
    assert text.count("PhoneNoB") >= 3 and "13800010000" not in text


def test_a_field_beyond_the_csv_limit_and_a_huge_file_do_not_stop_a_backfill(
    pipeline: Runtime, tmp_path: Path
) -> None:
    """A 200 kB cell (beyond csv's field limit) is one rejected row; 20,000 rows around it all go."""
    n = 20_000
    path = tmp_path / "huge.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        fh.write(",".join(FIELDS) + "\n")
        for i in range(n):
            r = good_row(i)
            r["PhoneNoA"] = f"138{i:08d}"
            r["PhoneNoB"] = f"139{i:08d}"
            fh.write(",".join(r.values()) + "\n")
            if i == n // 2:
                fh.write(f'FC100000001,"{"9" * 200_000}",13900000000,{r["Expiration"]},big,\n')
    summary = run_backfill(path)
    assert summary["enqueued"] == n and summary["rejected"] == 1, summary
    assert queued(pipeline) == n
    assert write_csv  # the shared helpers stay importable for the other backfill tests
