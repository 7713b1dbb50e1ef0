"""``axb backfill`` commits chunk k while it validates chunk k+1: results, rejects and progress
must still come out chunk by chunk, in file order, as if nothing overlapped."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from tests.test_backfill import FIELDS, good_row, queued, write_csv
from worker import backfill as backfill_mod
from worker.backfill import run_backfill
from worker.runtime import Runtime


def read_rejects(path: str) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_rejects_of_every_kind_come_out_chunk_by_chunk(pipeline: Runtime, tmp_path: Path) -> None:
    """Unreadable rows, invalid rows and idempotency conflicts over many chunks: each chunk's
    rejects in the order a backfill always wrote them (unreadable rows as read, then the chunk's
    invalid rows, then its conflicts), chunk after chunk."""
    path = tmp_path / "mixed.csv"
    chunk = 8
    lines = [",".join(FIELDS)]
    readable = 0
    expected: list[tuple[int, int, int, str, str]] = []  # (chunk, kind, line, field, code)
    for i in range(60):
        row = good_row(i)
        line = len(lines) + 1
        if i % 13 == 4:
            lines.append("FC100000001,13800019999")  # too few columns
            expected.append((readable // chunk, 0, line, "", "isv.INVALID_PARAMETERS"))
            continue
        if i % 7 == 3:
            row["PhoneNoA"] = "12345"
            expected.append((readable // chunk, 1, line, "PhoneNoA", "isv.MOBILE_NUMBER_ILLEGAL"))
        elif i % 11 == 5:
            row["OutId"] = "bf-0"  # the first row's key (same chunk or an earlier one), other numbers
            expected.append((readable // chunk, 2, line, "IdempotencyKey", "axb.IDEMPOTENCY_CONFLICT"))
        readable += 1
        lines.append(",".join(row.values()))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    summary = run_backfill(path, chunk=chunk)
    rejects = read_rejects(summary["rejects_file"])
    assert [(int(r["line"]), r["field"], r["code"]) for r in rejects] == [e[2:] for e in sorted(expected)]
    conflicts = [r for r in rejects if r["code"] == "axb.IDEMPOTENCY_CONFLICT"]
    assert len(conflicts) == sum(1 for e in expected if e[1] == 2) > 3
    assert all("'bf-0'" in r["reason"] for r in conflicts)
    assert "13800019999" not in Path(summary["rejects_file"]).read_text()
    good = 60 - len(expected)
    assert summary["enqueued"] == good and summary["rejected"] == len(expected) and summary["rows"] == 60
    assert queued(pipeline) == good
    progress = json.loads(path.with_name(path.name + ".progress").read_text())
    assert progress["done"] and progress["rows_done"] == 60


def test_progress_is_saved_once_per_chunk_after_its_commit(
    pipeline: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each save follows the chunk it counts: what it says is done is on the queue."""
    path = write_csv(tmp_path / "p.csv", [good_row(i) for i in range(45)])
    saves: list[tuple[int, int, bool]] = []
    real_save = backfill_mod.Progress.save

    def watching_save(self: Any, rows_done: int, done: bool = False) -> None:
        saves.append((rows_done, queued(pipeline), done))
        real_save(self, rows_done, done)

    monkeypatch.setattr(backfill_mod.Progress, "save", watching_save)
    run_backfill(path, chunk=10)
    assert saves == [
        (10, 10, False),
        (20, 20, False),
        (30, 30, False),
        (40, 40, False),
        (45, 45, False),
        (45, 45, True),
    ]


def test_a_failure_while_committing_stops_the_run_at_the_last_saved_chunk(
    pipeline: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The committing thread's error reaches the caller; a rerun resumes after the last saved chunk
    and enqueues nothing twice."""
    path = write_csv(tmp_path / "f.csv", [good_row(i) for i in range(40)])
    real_publish = pipeline.publish
    calls = {"n": 0}

    def failing_publish(key_list: Any, *args: Any, **kw: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise ConnectionError("broker gone")
        real_publish(key_list, *args, **kw)

    monkeypatch.setattr(pipeline, "publish", failing_publish)
    with pytest.raises(ConnectionError, match="broker gone"):
        run_backfill(path, chunk=10)
    progress = json.loads(path.with_name(path.name + ".progress").read_text())
    assert progress["rows_done"] == 20 and not progress["done"]
    assert queued(pipeline) == 20  # the third chunk is recorded but was never published
    monkeypatch.setattr(pipeline, "publish", real_publish)
    summary = run_backfill(path, chunk=10)
    assert summary["resumed_after_rows"] == 20
    assert summary["enqueued"] == 10 and summary["duplicates"] == 10  # the third chunk's records existed
    assert queued(pipeline) == 40 and len(set(queued_keys(pipeline))) == 40


def queued_keys(rt: Runtime) -> list[str]:
    from tests.test_producer_bulk import queued_keys as keys_on_queue

    return keys_on_queue(rt)


def test_unbinds_and_extends_see_the_binds_of_their_own_and_earlier_chunks(
    pipeline: Runtime, tmp_path: Path
) -> None:
    """An Action row naming a key bound earlier in the file (same chunk or before) is accepted."""
    fields = ["Action", *FIELDS]
    rows: list[dict[str, str]] = []
    for i in range(12):
        rows.append({"Action": "", **good_row(i)})
    rows.append({"Action": "unbind", **dict.fromkeys(FIELDS, ""), "OutId": "bf-2"})
    rows.append({"Action": "bind", **good_row(12)})
    rows.append({"Action": "unbind", **dict.fromkeys(FIELDS, ""), "IdempotencyKey": "bf-12"})
    rows.append({"Action": "unbind", **dict.fromkeys(FIELDS, ""), "OutId": "never-bound"})
    path = tmp_path / "ops.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    summary = run_backfill(path, chunk=5)
    assert summary["by_action"] == {"bind": 13, "unbind": 2}
    assert summary["enqueued"] == 15 and summary["rejected"] == 1
    (reject,) = read_rejects(summary["rejects_file"])
    assert reject["line"] == "17" and reject["code"] == "axb.UNKNOWN_KEY"
    assert pipeline.store.get("unbind:bf-12") is not None and pipeline.store.get("unbind:bf-2") is not None


def test_a_file_whose_binds_are_all_refused_counts_no_action(pipeline: Runtime, tmp_path: Path) -> None:
    rows = [{**good_row(i), "PhoneNoA": "12345"} for i in range(12)]
    summary = run_backfill(write_csv(tmp_path / "bad.csv", rows), chunk=5)
    assert summary["rejected"] == 12 and summary["enqueued"] == 0 and summary["by_action"] == {}
    assert queued(pipeline) == 0


def test_a_run_cut_short_while_a_chunk_is_in_redis_loses_nothing(
    pipeline: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while chunk 3 is validated and chunk 2's records are being created: chunk 2 is
    recorded but not published; the rerun publishes it (a duplicate, not a new bind), nothing
    twice, and no connection is left checked out of the pool."""
    from worker import producer

    path = write_csv(tmp_path / "cut.csv", [good_row(i) for i in range(40)])
    real_prepare = producer.prepare_binds
    calls = {"n": 0}

    def interrupted_prepare(items: Any, **kw: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_prepare(items, **kw)

    monkeypatch.setattr(producer, "prepare_binds", interrupted_prepare)
    with pytest.raises(KeyboardInterrupt):
        run_backfill(path, chunk=10)
    assert queued(pipeline) == 10
    assert pipeline.store.get("bf-15") is not None and not pipeline.store.get("bf-15").published  # type: ignore[union-attr]
    assert not pipeline.redis.connection_pool._in_use_connections
    monkeypatch.setattr(producer, "prepare_binds", real_prepare)

    summary = run_backfill(path, chunk=10)
    assert summary["resumed_after_rows"] == 10
    assert summary["duplicates"] == 10 and summary["enqueued"] == 20
    assert queued(pipeline) == 40 and len(set(queued_keys(pipeline))) == 40
