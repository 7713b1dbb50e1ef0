"""``axb backfill``: bad rows rejected, resumable after an interruption, nothing enqueued twice."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from worker import backfill as backfill_mod
from worker.backfill import run_backfill
from worker.runtime import Runtime

FIELDS = ["PoolKey", "PhoneNoA", "PhoneNoB", "Expiration", "OutId", "IdempotencyKey"]


def expiration() -> str:
    return (datetime.now(UTC) + timedelta(hours=9)).strftime("%Y-%m-%d %H:%M:%S")


def good_row(i: int) -> dict[str, str]:
    return {
        "PoolKey": "FC100000001",
        "PhoneNoA": f"1380001{i:04d}",
        "PhoneNoB": f"1390001{i:04d}",
        "Expiration": expiration(),
        "OutId": f"bf-{i}",
        "IdempotencyKey": "",
    }


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    return path


def queued(rt: Runtime) -> int:
    """Keys waiting on the test queue (no worker is running in these tests): a bulk enqueue
    carries many keys per message, so the keys inside the messages are counted."""
    from tests.test_batch import queued as messages

    return sum(len(ks) for _, ks, _ in messages(rt))


def test_bad_rows_go_to_the_rejects_file_and_the_rest_is_enqueued(pipeline: Runtime, tmp_path: Path) -> None:
    """Illegal numbers, A == B, a past expiry and a formula are rejected with field and code."""
    rows = [good_row(i) for i in range(5)]
    rows.insert(1, {**good_row(90), "PhoneNoA": "12345"})
    rows.insert(3, {**good_row(91), "PhoneNoB": good_row(91)["PhoneNoA"]})
    rows.append({**good_row(92), "Expiration": "2020-01-01 00:00:00"})
    rows.append({**good_row(93), "PhoneNoA": '=HYPERLINK("http://x")'})
    path = write_csv(tmp_path / "trips.csv", rows)
    summary = run_backfill(path)
    assert summary["rows"] == 9 and summary["enqueued"] == 5 and summary["rejected"] == 4
    assert queued(pipeline) == 5
    with open(summary["rejects_file"], newline="", encoding="utf-8") as fh:
        rejects = list(csv.DictReader(fh))
    assert [r["line"] for r in rejects] == ["3", "5", "9", "10"]
    assert [r["code"] for r in rejects][:2] == ["isv.MOBILE_NUMBER_ILLEGAL", "isv.INVALID_PARAMETERS"]
    assert rejects[2]["code"] == "isv.EXPIRE_DATE_ILLEGAL" and rejects[2]["field"] == "Expiration"
    assert rejects[3]["row"].startswith("'") or not rejects[3]["row"].startswith("=")
    text = Path(summary["rejects_file"]).read_text()
    assert "13800010091" not in text  # masked unless asked


def test_broken_rows_never_stop_the_file(pipeline: Runtime, tmp_path: Path) -> None:
    """Wrong column counts, blank lines and bytes that are not UTF-8 are rejected; the rest goes."""
    path = tmp_path / "broken.csv"
    good = [good_row(i) for i in range(3)]
    lines = [",".join(FIELDS)]
    lines.append(",".join(good[0].values()))
    lines.append("")
    lines.append("FC100000001,13800019999")
    lines.append(",".join(good[1].values()) + ",extra")
    lines.append(",".join(good[2].values()))
    data = ("\n".join(lines) + "\n").encode() + b"FC100000001,\xff\xfe138,139,x,y,\n"
    path.write_bytes(data)
    summary = run_backfill(path)
    assert summary["enqueued"] == 2 and summary["rejected"] == 3
    assert queued(pipeline) == 2


def test_jsonl_rows_load_with_the_api_names(pipeline: Runtime, tmp_path: Path) -> None:
    """JSONL works like CSV, including IdempotencyKey and a line that is not JSON."""
    path = tmp_path / "trips.jsonl"
    rows = [json.dumps({**good_row(i), "IdempotencyKey": f"idem-{i}"}) for i in range(3)]
    rows.insert(1, "{not json")
    path.write_text("\n".join(rows) + "\n")
    summary = run_backfill(path)
    assert summary["enqueued"] == 3 and summary["rejected"] == 1
    assert pipeline.store.get("idem-2") is not None


def test_a_backfill_cut_short_resumes_without_enqueueing_anything_twice(
    pipeline: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C after a chunk was enqueued but before progress was saved: the rerun resumes, no doubles."""
    path = write_csv(tmp_path / "big.csv", [good_row(i) for i in range(50)])
    real_save = backfill_mod.Progress.save
    calls = {"n": 0}

    def interrupting_save(self: Any, rows_done: int, done: bool = False) -> None:
        calls["n"] += 1
        if calls["n"] == 3:  # the third chunk is enqueued, then the user hits Ctrl-C
            raise KeyboardInterrupt
        real_save(self, rows_done, done)

    monkeypatch.setattr(backfill_mod.Progress, "save", interrupting_save)
    with pytest.raises(KeyboardInterrupt):
        run_backfill(path, chunk=10)
    assert queued(pipeline) == 30
    monkeypatch.setattr(backfill_mod.Progress, "save", real_save)

    summary = run_backfill(path, chunk=10)
    assert summary["resumed_after_rows"] == 20
    assert summary["duplicates"] == 10 and summary["enqueued"] == 20
    assert queued(pipeline) == 50  # one message per row, not one more

    again = run_backfill(path, chunk=10, restart=True)
    assert again["duplicates"] == 50 and again["enqueued"] == 0
    assert queued(pipeline) == 50


def test_an_unpublished_record_is_published_by_a_rerun(
    pipeline: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A producer that died between recording and publishing: the rerun publishes, exactly once."""
    path = write_csv(tmp_path / "t.csv", [good_row(i) for i in range(4)])

    def broken_publish(key_list: Any, action: str = "bind", *, batch: bool = False) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "publish", broken_publish)
    with pytest.raises(KeyboardInterrupt):
        run_backfill(path)
    assert queued(pipeline) == 0
    monkeypatch.undo()
    summary = run_backfill(path)
    assert summary["duplicates"] == 4 and queued(pipeline) == 4
    run_backfill(path, restart=True)
    assert queued(pipeline) == 4


def test_backfill_wait_follows_every_row_to_its_end(
    celery_worker: Any, pipeline: Runtime, tmp_path: Path, simulator: Any
) -> None:
    """--wait returns when every row succeeded or was dead-lettered, with the codes."""
    rows = [good_row(i) for i in range(8)] + [{**good_row(8), "PoolKey": "FC999999999"}]
    summary = run_backfill(write_csv(tmp_path / "w.csv", rows), wait=True, wait_timeout_s=30)
    assert summary["succeeded"] == 8 and summary["dead_lettered"] == 1 and summary["unfinished"] == 0
    assert summary["dead_letter_codes"] == {"isv.POOLKEY_NOT_EXISTS": 1}
