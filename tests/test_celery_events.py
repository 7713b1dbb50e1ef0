"""Celery's own tools against a real ``axb worker``: events for Flower / ``celery events``
(AXB_TASK_EVENTS=true), masked; ``celery inspect ping`` with AXB_REMOTE_CONTROL=true."""

from __future__ import annotations

import json
import os
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.junk_messages import JUNK_PHONE, junk_messages
from tests.pipeline_fixture import WorkerProcess, apply_env, axb_env, wait_until
from tests.test_pipeline import request
from worker.celery_app import app
from worker.deadletters import DeadLetters
from worker.masking import mask_number
from worker.producer import enqueue_bind, enqueue_binds
from worker.runtime import Runtime

pytestmark = pytest.mark.slow

# A phone number used as an idempotency key by a message that our producers did not write
# (Celery's own send_task: its argsrepr is the plain repr): it must reach no event unmasked.
KEY_NUMBER = "13912345678"


class EventLog:
    """Every event a Celery ``Receiver`` sees, captured in a thread (what Flower consumes)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._receiver: Any = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    def _on_event(self, event: dict[str, Any]) -> None:
        with self._lock:
            self.events.append(dict(event))

    def _run(self) -> None:
        with app.connection_for_read() as conn:
            self._receiver = app.events.Receiver(conn, handlers={"*": self._on_event})
            self._ready.set()
            self._receiver.capture(limit=None, timeout=None, wakeup=False)

    def start(self) -> EventLog:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(10)
        time.sleep(0.5)  # the PSUBSCRIBE is sent on the first read
        return self

    def stop(self) -> None:
        if self._receiver is not None:
            self._receiver.should_stop = True
        if self._thread is not None:
            self._thread.join(5)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if e["type"] == kind]

    def by_task(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = defaultdict(set)
        with self._lock:
            for e in self.events:
                if e["type"].startswith("task-"):
                    out[e["uuid"]].add(e["type"])
        return out

    def dump(self) -> str:
        with self._lock:
            return json.dumps(self.events, default=str)


@pytest.fixture
def events(pipeline: Runtime) -> Iterator[EventLog]:
    log = EventLog().start()
    yield log
    log.stop()


def test_a_real_axb_worker_sends_worker_and_task_events_with_no_raw_number(
    pipeline: Runtime, events: EventLog, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The default `axb worker` (one process per core) with AXB_TASK_EVENTS=true: each process
    says worker-online and beats; every message is received, started and succeeded; junk still
    becomes dead letters; no event carries a raw phone number."""
    apply_env(monkeypatch, {"AXB_TASK_EVENTS": "true"})
    cores = len(os.sched_getaffinity(0))
    env = axb_env()
    env.pop("AXB_WORKER_PROCESSES", None)
    worker = WorkerProcess(env, log_path=tmp_path / "w.log").start()
    try:
        wait_until(lambda: len({e["hostname"] for e in events.of_type("worker-online")}) == cores, timeout=60)
        nodes = {e["hostname"] for e in events.of_type("worker-online")}
        wait_until(lambda: {e["hostname"] for e in events.of_type("worker-heartbeat")} == nodes, timeout=30)

        reqs = [request(700 + i) for i in range(30)]
        bulk = enqueue_binds(reqs[:25])  # bind_many messages
        assert not bulk.rejected
        singles = [enqueue_bind(r) for r in reqs[25:]]  # one axb.bind message each
        before = DeadLetters(pipeline.redis).entries(limit=10_000)
        junk = junk_messages(pipeline.settings.queue, oversized_bytes=1_100_000)
        pipeline.redis.lpush(pipeline.settings.queue, *junk.values())
        foreign = app.send_task("axb.bind", args=[KEY_NUMBER], queue=pipeline.settings.queue)
        keys = [h.key for h in bulk.handles] + [h.key for h in singles]
        store = pipeline.store
        wait_until(lambda: all(r is not None and r.terminal for r in store.get_many(keys)), timeout=90)
        assert all(r is not None and r.status == "succeeded" for r in store.get_many(keys))
        wait_until(lambda: "task-succeeded" in events.by_task().get(foreign.id, set()), timeout=30)
        dead = DeadLetters(pipeline.redis).entries(limit=10_000)
        assert len(dead) - len(before) >= len(junk), "every junk item is one dead letter"
        assert worker.proc is not None and worker.proc.poll() is None
        received = events.of_type("task-received")

        def all_finished() -> bool:
            tasks = events.by_task()
            return all({"task-started", "task-succeeded"} <= tasks[e["uuid"]] for e in received)

        wait_until(all_finished, timeout=30)
    finally:
        worker.stop()
    # Every key was named by the task-received event of the message that carried it.
    shown = " ".join(e["args"] for e in received)
    assert all(k in shown for k in keys)
    assert foreign.id in {e["uuid"] for e in received}
    assert {e["hostname"] for e in received} <= nodes
    # No raw number anywhere in what a monitor saw (requests' numbers, the foreign key, junk's).
    everything = events.dump()
    raw = {KEY_NUMBER, JUNK_PHONE} | {r[f] for r in reqs for f in ("PhoneNoA", "PhoneNoB")}
    leaked = sorted(n for n in raw if n in everything)
    assert not leaked, f"raw numbers in events: {leaked}"
    assert mask_number(KEY_NUMBER) in everything  # the foreign message's args, masked
    assert events.of_type("worker-offline"), "a warm stop says goodbye"


def test_events_are_off_by_default(pipeline: Runtime, events: EventLog, tmp_path: Path) -> None:
    """Without AXB_TASK_EVENTS a worker sends nothing (events cost throughput)."""
    worker = WorkerProcess(axb_env(), "--processes", "1", "-c", "4", log_path=tmp_path / "w.log").start()
    try:
        handle = enqueue_bind(request(800))
        assert handle.result(timeout=60).ok
        time.sleep(2.5)  # more than one heartbeat period
    finally:
        worker.stop()
    assert events.events == []


def test_inspect_ping_answers_with_remote_control_on(
    pipeline: Runtime, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """AXB_REMOTE_CONTROL=true: `celery inspect ping` (Flower's inspect too) gets its answer; the
    reply list is not taken for junk on the way (it once was: dead-lettered, no answer)."""
    apply_env(monkeypatch, {"AXB_REMOTE_CONTROL": "true"})
    before = len(DeadLetters(pipeline.redis).entries(limit=10_000))
    worker = WorkerProcess(
        axb_env(), "--processes", "1", "-c", "2", "-n", "pingme@%h", log_path=tmp_path / "w.log"
    ).start()
    try:

        def answered() -> list[Any]:
            return app.control.ping(timeout=2.0) or []

        replies = wait_until(answered, timeout=60, interval=0.5)
    finally:
        worker.stop()
    answers = {node: answer for r in replies for node, answer in r.items()}
    assert any(n.startswith("pingme@") and a == {"ok": "pong"} for n, a in answers.items()), answers
    assert len(DeadLetters(pipeline.redis).entries(limit=10_000)) == before
