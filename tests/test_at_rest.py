"""With AXB_DATA_KEY, a dump of every Redis key after a real backfill holds no phone number."""

from __future__ import annotations

import base64
import binascii
import csv
import json
import re
import subprocess
import sys
import unicodedata
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.pipeline_fixture import ROOT, WorkerProcess, apply_env, axb_env, wait_until
from tests.test_sealing import new_key
from worker import keys
from worker.producer import enqueue_bind, get_result
from worker.runtime import Runtime, get_runtime

GOOD, BAD, LATE = 12, 4, 3
HELD = GOOD + BAD + LATE


def number_a(i: int) -> str:
    return f"1380013{i:04d}"


def number_b(i: int) -> str:
    return f"1390013{i:04d}"


def expiration(minutes: float = 60) -> str:
    return (datetime.now(UTC) + timedelta(hours=8, minutes=minutes)).strftime("%Y-%m-%d %H:%M:%S")


def _texts(value: Any) -> list[str]:
    """Every text a stored value holds: itself, and any base64 body inside JSON (kombu messages)."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    out = [text]
    for body in re.findall(r'"body":\s*"([A-Za-z0-9+/=]+)"', text):
        try:
            out.append(base64.b64decode(body).decode("utf-8", "replace"))
        except (binascii.Error, ValueError):
            continue
    return out


def dump(client: redis.Redis) -> list[str]:
    """Every key name and every value of every type in every database with keys."""
    out: list[str] = []
    dbs = [int(name[2:]) for name in client.info("keyspace")]
    for db in dbs:
        kw = client.connection_pool.connection_kwargs
        c = redis.Redis(host=kw["host"], port=kw["port"], db=db)
        for key in c.scan_iter(count=1000):
            out.extend(_texts(key))
            kind = c.type(key).decode()
            if kind == "string":
                out.extend(_texts(c.get(key)))
            elif kind == "hash":
                for k, v in c.hgetall(key).items():
                    out.extend(_texts(k) + _texts(v))
            elif kind == "list":
                for v in c.lrange(key, 0, -1):
                    out.extend(_texts(v))
            elif kind == "set":
                for v in c.smembers(key):
                    out.extend(_texts(v))
            elif kind == "zset":
                for v, score in c.zrange(key, 0, -1, withscores=True):
                    out.extend([*_texts(v), str(score)])
            elif kind == "stream":
                for eid, fields in c.xrange(key):
                    out.extend(_texts(eid))
                    for k, v in fields.items():
                        out.extend(_texts(k) + _texts(v))
            else:  # pragma: no cover - a type this dump does not read is a gap in the test
                raise AssertionError(f"unread key type {kind} for {key!r}")
        c.close()
    return out


def spellings_found(texts: list[str], numbers: list[str]) -> list[str]:
    """Numbers present in any spelling: plain, +86 / 0086, spaces or dashes, full-width digits."""
    found = []
    flat = "\n".join(texts)
    squeezed = re.sub(r"[\s\-]", "", unicodedata.normalize("NFKC", flat))
    for n in numbers:
        if n in flat or n in squeezed:
            found.append(n)
    return found


def test_the_dump_check_finds_numbers_in_every_spelling(redis_client: redis.Redis) -> None:
    """The finder is not blind: each spelling of a number, stored plainly, is found."""
    spellings = ["13800139001", "+8613800139002", "008613800139003", "138 0013 9004", "138-0013-9005"]
    spellings.append("".join(chr(ord(c) + 0xFEE0) for c in "13800139006"))  # full-width digits
    for i, text in enumerate(spellings):
        redis_client.hset("probe", f"f{i}", json.dumps({"v": text}, ensure_ascii=False))
    redis_client.xadd("probe-stream", {"x": "138 0013 9001"})
    numbers = [f"1380013900{i}" for i in range(1, 7)]
    assert spellings_found(dump(redis_client), numbers) == numbers


def test_a_real_backfill_with_a_data_key_leaves_no_number_anywhere_in_redis(
    pipeline: Runtime, simulator: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`axb backfill` through `axb worker`, successes and dead letters, plus queued messages: every
    key, every type, kombu's included, holds no test number; results read back through
    get_result and `axb result`."""
    apply_env(monkeypatch, {"AXB_DATA_KEY": new_key()})
    rows = []
    for i in range(GOOD + BAD):
        rows.append(
            {
                "PoolKey": "FC999999999" if i >= GOOD else "FC100000001",
                "PhoneNoA": number_a(i),
                "PhoneNoB": number_b(i),
                "Expiration": expiration(),
                "OutId": f"rest-{i}",
            }
        )
    path = tmp_path / "trips.csv"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    env = axb_env()
    worker = WorkerProcess(env, "-c", "4", log_path=tmp_path / "w.log").start()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "worker.cli", "backfill", str(path), "--wait", "--json"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert done.returncode in (0, 1), done.stderr.decode()
        summary = json.loads(done.stdout)
        store = get_runtime().store
        wait_until(
            lambda: all(
                r is not None and r.terminal for r in store.get_many([f"rest-{i}" for i in range(GOOD + BAD)])
            ),
            timeout=60,
        )
        # One bind held by an account hold: it waits on the delay queue (a delayed entry).
        rt = get_runtime()
        rt.holds.hold_account(rt.settings.access_key_id, "isv.ACCOUNT_ABNORMAL", "test hold", 60)
        enqueue_bind(
            {
                "PoolKey": "FC100000001",
                "PhoneNoA": number_a(HELD),
                "PhoneNoB": number_b(HELD),
                "Expiration": expiration(),
                "OutId": f"rest-{HELD}",
            }
        )
        wait_until(lambda: rt.delay.depth() == 1, timeout=20)
    finally:
        worker.stop()
    assert summary["enqueued"] == GOOD + BAD
    # Messages still on the queue (no worker now): kombu's list holds them.
    for i in range(GOOD + BAD, GOOD + BAD + LATE):
        enqueue_bind(
            {
                "PoolKey": "FC100000001",
                "PhoneNoA": number_a(i),
                "PhoneNoB": number_b(i),
                "Expiration": expiration(),
                "OutId": f"rest-{i}",
            }
        )
    client = get_runtime().redis
    queue = get_runtime().settings.queue
    # Celery messages carry idempotency keys only.
    messages = [json.loads(m) for m in client.lrange(queue, 0, -1)]
    assert len(messages) == LATE
    for m in messages:
        args, kwargs, _embed = json.loads(base64.b64decode(m["body"]))
        carried = args[0] if isinstance(args[0], list) else args  # axb.bind_many: [[keys]]; else [key]
        assert kwargs == {} and carried and all(k.startswith("rest-") for k in carried)

    numbers = [n for i in range(HELD + 1) for n in (number_a(i), number_b(i))]
    texts = dump(client)
    for name in (
        queue,
        keys.delayed(queue),
        keys.watch(queue),
        keys.DEAD_LETTERS,
        keys.bind_history("rest-0"),
    ):
        assert name in texts  # each kind of key was read
    assert any(t.startswith("_kombu.binding") for t in texts)
    assert spellings_found(texts, numbers) == []

    records = [get_result(f"rest-{i}") for i in range(GOOD + BAD)]
    assert [r.status for r in records if r] == ["succeeded"] * GOOD + ["dead_lettered"] * BAD
    first = records[0]
    assert first is not None and first.dto is not None
    shown = subprocess.run(
        [sys.executable, "-m", "worker.cli", "result", "rest-0", "--json", "--show-numbers"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr.decode()
    info = json.loads(shown.stdout)
    assert info["status"] == "succeeded"
    assert info["SecretBindDTO"]["SubsId"] == first.dto.subs_id
    assert info["SecretBindDTO"]["SecretNo"] == first.dto.secret_no
    from worker.deadletters import DeadLetters

    dead = DeadLetters(client).entries()
    assert sorted(d.request["PhoneNoA"] for d in dead) == [number_a(i) for i in range(GOOD, GOOD + BAD)]
