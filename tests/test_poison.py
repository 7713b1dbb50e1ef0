"""Junk on the queue, against real ``axb worker`` processes and real Redis: each item becomes one
``axb.MALFORMED_MESSAGE`` dead letter (masked, capped), the worker goes on; ``axb worker`` exits
non-zero when Celery stops on an error."""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from tests.junk_messages import JUNK_PHONE, REASONS, junk_messages
from tests.pipeline_fixture import FAST, ROOT, WorkerProcess, apply_env, axb_env, wait_until
from tests.test_pipeline import request
from worker import errors
from worker.cli import main
from worker.deadletters import RAW_KEEP_CHARS, DeadLetter, DeadLetters
from worker.producer import enqueue_bind
from worker.runtime import Runtime, get_runtime, reset_runtime
from worker.settings import reset_settings_cache

pytestmark = pytest.mark.slow


class JunkWorker:
    """One real worker process (and the test's runtime) on a queue of its own."""

    def __init__(self, rt: Runtime, worker: WorkerProcess, log_path: Path) -> None:
        self.rt = rt
        self.worker = worker
        self.log_path = log_path
        self.pid = worker.proc.pid if worker.proc else 0

    @property
    def queue(self) -> str:
        return self.rt.settings.queue

    def alive(self) -> bool:
        return self.worker.proc is not None and self.worker.proc.poll() is None

    def last_dead_letter_id(self) -> str:
        entries = DeadLetters(self.rt.redis).entries(limit=100_000)
        return entries[-1].id if entries else "0-0"

    def dead_letters_after(self, entry_id: str) -> list[DeadLetter]:
        return [dl for dl in DeadLetters(self.rt.redis).entries(limit=10_000) if _after(dl.id, entry_id)]


def _after(a: str, b: str) -> bool:
    return tuple(map(int, a.split("-"))) > tuple(map(int, b.split("-")))


@pytest.fixture(scope="module")
def junk_worker(redis_server: Any, simulator_server: Any, tmp_path_factory: Any) -> Iterator[JunkWorker]:
    """A threads-pool worker shared by the per-kind tests (a worker costs seconds to start)."""
    # The session's simulator, fresh: bindings left live by earlier tests of this process would
    # otherwise use up its X numbers (isv.NO_AVAILABLE_NUMBER).
    simulator_server.reset()
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith("AXB_"):
                mp.delenv(name)
        apply_env(
            mp,
            {
                **FAST,
                "AXB_REDIS_URL": redis_server.url,
                "AXB_ENDPOINT": simulator_server.url,
                "AXB_ACCESS_KEY_ID": "test-access-key-id",
                "AXB_ACCESS_KEY_SECRET": "test-access-key-secret",
                "AXB_QUEUE": f"axb.junk.{uuid.uuid4().hex[:8]}",
            },
        )
        log_path = tmp_path_factory.mktemp("junk") / "worker.log"
        worker = WorkerProcess(axb_env(), "-c", "4", log_path=log_path).start()
        jw = JunkWorker(get_runtime(), worker, log_path)
        try:
            yield jw
        finally:
            worker.stop()
            reset_runtime()
            reset_settings_cache()


def push_junk_then_a_bind(jw: JunkWorker, junk: list[bytes], n: int) -> str:
    """LPUSH ``junk`` behind a bind and before another; both binds must succeed. Returns the last
    dead letter id from before the push."""
    before = jw.last_dead_letter_id()
    first = enqueue_bind(request(n))
    jw.rt.redis.lpush(jw.queue, *junk)
    second = enqueue_bind(request(n + 1))
    assert first.result(timeout=30).ok
    assert second.result(timeout=30).ok
    return before


def assert_taken_off_the_queue(jw: JunkWorker, junk: list[bytes]) -> None:
    """Nothing of the junk is left anywhere it could be delivered from again."""
    r = jw.rt.redis
    assert r.llen(jw.queue) == 0
    unacked = [bytes(v) for v in r.hvals("unacked")]
    assert not any(item[:200] in u for item in junk for u in unacked)


@pytest.mark.parametrize("kind", list(REASONS))
def test_a_junk_item_becomes_exactly_one_masked_dead_letter_and_the_worker_goes_on(
    junk_worker: JunkWorker, kind: str
) -> None:
    """LPUSH of one kind of junk between two binds: both bind, one dead letter says why, masked."""
    item = junk_messages(junk_worker.queue)[kind]
    before = push_junk_then_a_bind(junk_worker, [item], 500 + 2 * list(REASONS).index(kind))
    new = wait_until(lambda: junk_worker.dead_letters_after(before), timeout=10)
    assert_taken_off_the_queue(junk_worker, [item])
    assert len(junk_worker.dead_letters_after(before)) == 1
    dl = new[0]
    assert dl.code == errors.MALFORMED_MESSAGE
    assert REASONS[kind] in dl.message
    assert dl.key == "" and dl.request == {}
    assert JUNK_PHONE not in dl.raw and JUNK_PHONE not in dl.message
    if kind != "json_array":
        assert "138****8000" in dl.raw, dl.raw[:300]
    assert 0 < len(dl.raw) <= RAW_KEEP_CHARS
    assert junk_worker.alive() and junk_worker.worker.proc is not None
    assert junk_worker.worker.proc.pid == junk_worker.pid


def test_a_malformed_dead_letter_is_shown_and_replay_refuses_it(junk_worker: JunkWorker) -> None:
    """`axb dlq show` prints the entry (masked); `axb dlq replay` refuses: there is nothing to replay."""
    before = push_junk_then_a_bind(junk_worker, [junk_messages(junk_worker.queue)["unknown_task"]], 560)
    dl = wait_until(lambda: junk_worker.dead_letters_after(before), timeout=10)[0]
    cli = CliRunner()
    shown = cli.invoke(main, ["dlq", "show", dl.id], catch_exceptions=False)
    assert shown.exit_code == 0
    assert errors.MALFORMED_MESSAGE in shown.output and "axb.no_such_task" in shown.output
    assert JUNK_PHONE not in shown.output
    as_json = json.loads(cli.invoke(main, ["dlq", "show", dl.id, "--json"], catch_exceptions=False).stdout)
    assert as_json["code"] == errors.MALFORMED_MESSAGE and "138****8000" in as_json["raw"]
    assert as_json["queue"] == junk_worker.queue
    out = cli.invoke(main, ["dlq", "replay", dl.id, "--json"], catch_exceptions=False)
    report = json.loads(out.stdout)
    assert report["replayed"] == []
    assert report["skipped"][0]["id"] == dl.id and "nothing to replay" in report["skipped"][0]["reason"]
    assert DeadLetters(junk_worker.rt.redis).get(dl.id) is not None  # still there for a person


def test_a_prefork_worker_dead_letters_every_kind_of_junk_and_goes_on(
    pipeline: Runtime, simulator: Any, tmp_path: Path
) -> None:
    """The same with ``--pool prefork``: all kinds at once, one dead letter each, same process."""
    junk = list(junk_messages(pipeline.settings.queue).values())
    worker = WorkerProcess(axb_env(), "--pool", "prefork", "-c", "2", log_path=tmp_path / "w.log").start()
    try:
        assert worker.proc is not None
        pid = worker.proc.pid
        first = enqueue_bind(request(600))
        pipeline.redis.lpush(pipeline.settings.queue, *junk)
        second = enqueue_bind(request(601))
        assert first.result(timeout=40).ok and second.result(timeout=40).ok
        dead = DeadLetters(pipeline.redis)
        wait_until(lambda: dead.depth() >= len(junk), timeout=10)
        assert worker.proc.poll() is None and worker.proc.pid == pid
    finally:
        worker.stop()
    entries = dead.entries()
    assert len(entries) == len(junk)
    assert sorted(next(k for k, why in REASONS.items() if why in e.message) for e in entries) == sorted(
        REASONS
    )
    assert pipeline.redis.llen(pipeline.settings.queue) == 0


def test_a_bad_argument_in_a_well_formed_message_is_still_dead_lettered_by_the_task(
    junk_worker: JunkWorker,
) -> None:
    """A valid envelope whose task argument is not a key: the task keeps it as one dead letter."""
    from worker.celery_app import app

    before = junk_worker.last_dead_letter_id()
    app.send_task("axb.bind", args=[int(JUNK_PHONE)], queue=junk_worker.queue)
    assert enqueue_bind(request(570)).result(timeout=30).ok
    dl = wait_until(lambda: junk_worker.dead_letters_after(before), timeout=10)[0]
    assert dl.code == errors.MALFORMED_MESSAGE and "exactly one idempotency key" in dl.message
    assert JUNK_PHONE not in dl.raw and "138****8000" in dl.raw


def test_the_redis_and_sentinel_transports_both_check_what_they_pop() -> None:
    """Every broker URL scheme we support resolves to a channel that checks items; the copies of
    kombu's pop-and-parse methods still match kombu (re-read worker/queue/intake.py on a mismatch)."""
    from kombu.transport import get_transport_cls
    from kombu.transport import redis as kombu_redis

    import worker.celery_app  # noqa: F401  (installs the transports)
    from worker.queue import intake

    for scheme in ("redis", "rediss", "sentinel"):
        transport = get_transport_cls(scheme)
        assert transport is not None and issubclass(transport.Channel, intake.JunkSafeChannelMixin)
    assert issubclass(intake.SentinelChannel, kombu_redis.SentinelChannel)
    # The two kombu methods worker/queue/intake.py copies, as they were when copied (kombu 5.7).
    assert "self.connection._deliver(loads(bytes_to_str(item)), dest)" in inspect.getsource(
        kombu_redis.Channel._brpop_read
    )
    assert "self._flush_brpop_reauth()" in inspect.getsource(kombu_redis.Channel._brpop_read)
    assert "return loads(bytes_to_str(item))" in inspect.getsource(kombu_redis.Channel._get)
    assert kombu_redis.SentinelChannel._brpop_read is kombu_redis.Channel._brpop_read
    assert kombu_redis.SentinelChannel._get is kombu_redis.Channel._get


# --- exit status -------------------------------------------------------------------------------

FAILING_BOOTSTEP = textwrap.dedent(
    """
    import sys
    from celery import bootsteps
    from worker.celery_app import app

    class Boom(bootsteps.StartStopStep):
        "A worker part that fails to start: Celery stops with 'Unrecoverable error'."
        requires = {"celery.worker.components:Pool"}

        def start(self, worker):
            raise RuntimeError("boom at start")

    app.steps["worker"].add(Boom)
    from worker.cli import main
    main(["worker", "--processes", "1", "-l", "WARNING"])
    """
)


def test_axb_worker_exits_non_zero_when_celery_stops_on_an_unrecoverable_error(pipeline: Runtime) -> None:
    """A real `axb worker` whose Celery hits "Unrecoverable error" exits 1, not 0."""
    out = subprocess.run(
        [sys.executable, "-c", FAILING_BOOTSTEP],
        env=axb_env(),
        cwd=ROOT,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert b"Unrecoverable error: RuntimeError('boom at start')" in out.stdout + out.stderr
    assert out.returncode == 1


def test_axb_worker_exits_non_zero_when_celery_refuses_to_start(pipeline: Runtime, tmp_path: Path) -> None:
    """Another worker holds the pidfile: Celery stops at start; `axb worker` exits with its 73."""
    pidfile = tmp_path / "w.pid"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        pidfile.write_text(f"{holder.pid}\n")
        out = subprocess.run(
            [sys.executable, "-m", "worker.cli", "worker", f"--pidfile={pidfile}"],
            env=axb_env(),
            cwd=ROOT,
            capture_output=True,
            timeout=60,
            check=False,
        )
    finally:
        holder.kill()
        holder.wait(5)
    assert b"already exists" in out.stderr + out.stdout
    assert out.returncode == 73


def test_axb_worker_exits_zero_after_a_warm_shutdown(pipeline: Runtime, tmp_path: Path) -> None:
    """SIGTERM is an orderly stop: exit status 0 (a supervisor does not count it as a failure)."""
    worker = WorkerProcess(axb_env(), "-c", "2", log_path=tmp_path / "w.log").start()
    assert enqueue_bind(request(580)).result(timeout=30).ok  # it is up and working
    assert worker.proc is not None
    proc = worker.proc
    proc.terminate()
    assert proc.wait(40) == 0


def test_an_item_the_consumer_still_fails_on_after_the_checks_is_dead_lettered_and_settled(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """The last guard: should kombu or Celery raise on an item that passed the checks, the item is
    dead-lettered and its delivery settled (not redelivered), and the consumer is not stopped."""
    from kombu import Connection

    from worker.queue import intake

    def consumer_that_fails(message: Any) -> None:
        raise ZeroDivisionError("a consumer bug")

    with Connection(redis_url) as conn:
        channel = conn.default_channel
        assert intake.is_junk_safe(channel)
        channel.basic_consume("q", no_ack=False, callback=consumer_that_fails, consumer_tag="t")
        item = junk_messages("q")["unknown_task"]
        channel.deliver(json.loads(item), item, "q")
        assert redis_client.hlen("unacked") == 0
    entries = DeadLetters(redis_client).entries()
    assert [e.code for e in entries] == [errors.MALFORMED_MESSAGE]
    assert "refused by the consumer: ZeroDivisionError: a consumer bug" in entries[0].message


def test_every_long_running_compose_service_restarts_and_the_one_shot_backfill_does_not() -> None:
    """docker-compose.yml: a worker that exits on an error comes back; so do Redis, the simulator,
    Flower and any service added later. The backfill runs once."""
    text = (ROOT / "docker-compose.yml").read_text()
    services_block = text.split("\nservices:\n", 1)[1].split("\nvolumes:", 1)[0]
    blocks = re.split(r"\n(?=  [a-z][\w-]*:\n)", "\n" + services_block)
    restart = {}
    for block in filter(str.strip, blocks):
        name = block.strip().split(":", 1)[0]
        found = re.search(r"^    restart: *(\S+)", block, re.MULTILINE)
        restart[name] = found.group(1).strip("\"'") if found else None
    assert {"redis", "simulator", "worker", "flower", "backfill"} <= set(restart)
    assert restart.pop("backfill") == "no"
    assert all(policy in ("on-failure", "unless-stopped", "always") for policy in restart.values()), restart


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"[" * 100_000, "not JSON (RecursionError)"),
        (b'{"__type__": "uuid", "__value__": 5}', "not JSON"),
        (b'{"__type__": "decimal", "__value__": "x"}', "not JSON"),
        (b"\xff\xfe not utf-8", "not JSON"),
        (b"null", "a JSON NoneType"),
    ],
)
def test_the_envelope_check_turns_every_parser_failure_into_a_reason(raw: bytes, reason: str) -> None:
    """Junk that breaks kombu's JSON parser in other ways than ValueError is refused all the same."""
    from worker.queue import MalformedMessage, check_envelope

    with pytest.raises(MalformedMessage, match=re.escape(reason)):
        check_envelope(raw, task_names={"axb.bind"}, accept={"application/json"})


def test_a_direct_get_skips_and_dead_letters_junk_too(redis_url: str, redis_client: redis.Redis) -> None:
    """kombu's other way in (``basic_get``, an RPOP): junk is dead-lettered, the next message returned."""
    from kombu import Connection

    import tasks.bind  # noqa: F401  (registers axb.bind)
    from tests.junk_messages import envelope

    good = envelope("q2", [["k-1"], {}, {}])
    redis_client.lpush("q2", junk_messages("q2")["not_json"], json.dumps(good))  # the junk pops first
    with Connection(redis_url) as conn:
        message = conn.default_channel.basic_get("q2", no_ack=True)
    assert message is not None and message.headers["id"] == good["headers"]["id"]
    assert [e.message for e in DeadLetters(redis_client).entries()] == ["not JSON (JSONDecodeError)"]


def test_a_sentinel_broker_connection_dead_letters_junk_too(
    redis_server: Any, redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """A real sentinel in front of the test Redis: a ``sentinel://`` connection's channel checks
    items the same way (kombu's SentinelChannel with the mixin)."""
    from kombu import Connection

    import tasks.bind  # noqa: F401  (registers axb.bind)
    from tests.conftest import free_port
    from tests.junk_messages import envelope
    from worker.queue import intake

    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor mymaster 127.0.0.1 {redis_server.port} 1\n"
    )
    sentinel = subprocess.Popen(
        ["redis-server", str(conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        probe = redis.Redis(port=port)
        wait_until(lambda: _answers(probe), timeout=10)
        good = envelope("q3", [["k-1"], {}, {}])
        redis_client.lpush("q3", junk_messages("q3")["json_array"], json.dumps(good))
        url = f"sentinel://127.0.0.1:{port}"
        with Connection(url, transport_options={"master_name": "mymaster"}) as conn:
            channel = conn.default_channel
            assert isinstance(channel, intake.SentinelChannel)
            message = channel.basic_get("q3", no_ack=True)
        assert message is not None and message.headers["id"] == good["headers"]["id"]
        entries = DeadLetters(redis_client).entries()
        assert [(e.code, e.raw) for e in entries] == [(errors.MALFORMED_MESSAGE, "[1,2,3]")]
    finally:
        sentinel.terminate()
        sentinel.wait(10)


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
