"""Creating bind records: many per script call (``create_many.lua``), sent pipelined.

:class:`PendingCreates` sends the calls in one write and reads the answers later, so the caller
(a backfill validating its next chunk) works while Redis creates the records.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NamedTuple

import redis

from worker import keys
from worker.redis_client import translated
from worker.redis_text import as_text
from worker.sealing import check_data_key, seal
from worker.store.base import StoreBase, callback_fields
from worker.store.records import PENDING, now_ms

_ROWS_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


class CreateOutcome(NamedTuple):
    """What :meth:`BindStore.create_many` found or made for one row (a tuple: bulk enqueues make
    one per row)."""

    created: bool
    fingerprint: str
    status: str
    published: bool


class CreateCall(NamedTuple):
    """One ``create_many`` script call: its rows, KEYS and ARGV."""

    rows: Sequence[dict[str, Any]]
    keys: list[str]
    args: list[Any]


class PendingCreates:
    """``create_many`` calls sent by :meth:`BindStore.start_create_many`, answers not read yet.

    The calls go out on a connection of the client's pool, held until :meth:`result` reads every
    answer (or :meth:`discard` drops it). A call whose answer cannot be had (the connection
    failed, or Redis lost the script) is made again, synchronously, through the registered
    script, which retries and reloads as every other call does: rows its first run created are
    then reported as existing, with their own fingerprint, not published, as after any retry.
    """

    def __init__(self, store: StoreBase, calls: list[CreateCall]) -> None:
        self._store = store
        self._calls = calls
        self._conn: Any = None
        self._out: list[CreateOutcome] | None = None

    def send(self) -> None:
        if not self._calls:
            return
        pool = self._store.r.connection_pool
        conn: Any  # redis-py's Connection: send_packed_command and friends are untyped
        try:
            try:
                conn = pool.get_connection()
            except TypeError:  # redis-py < 5.3 wants a command name
                conn = pool.get_connection("EVALSHA")  # type: ignore[arg-type,unused-ignore]
        except (redis.ConnectionError, redis.TimeoutError):
            return  # result() makes the calls the ordinary way
        sha = self._store.scripts["create_many"].sha
        try:
            conn.send_packed_command(
                conn.pack_commands([("EVALSHA", sha, len(c.keys), *c.keys, *c.args) for c in self._calls])
            )
        except (redis.ConnectionError, redis.TimeoutError):
            self._drop(conn)
            return
        except BaseException:
            self._drop(conn)
            raise
        self._conn = conn

    def result(self) -> list[CreateOutcome]:
        """The outcome of every row, in order (reads the answers; once)."""
        if self._out is not None:
            return self._out
        conn, self._conn = self._conn, None
        replies: list[Any] = []
        if conn is not None:
            try:
                for _ in self._calls:
                    try:
                        replies.append(conn.read_response())
                    except redis.ResponseError as exc:  # one answer per call, an error too
                        replies.append(exc)
            except (redis.ConnectionError, redis.TimeoutError):
                self._drop(conn)
                conn = None
            except BaseException:
                self._drop(conn)
                raise
            else:
                self._store.r.connection_pool.release(conn)
        out: list[CreateOutcome] = []
        for i, call in enumerate(self._calls):
            res = replies[i] if i < len(replies) else None
            if res is None or isinstance(res, redis.exceptions.NoScriptError):
                res = self._store.scripts.run("create_many", call.keys, call.args)
            elif isinstance(res, redis.ResponseError):
                raise translated(res)
            _outcomes(call.rows, res, out)
        self._out = out
        return out

    def discard(self) -> None:
        """Give the connection back without reading the answers (the records are made anyway)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            self._drop(conn)

    def _drop(self, conn: Any) -> None:
        conn.disconnect()  # answers may be pending: the connection cannot be used again as it is
        self._store.r.connection_pool.release(conn)


def _outcomes(rows: Sequence[dict[str, Any]], res: Any, out: list[CreateOutcome]) -> None:
    """Decode one ``create_many`` answer into ``out``."""
    flags, rest = as_text(res[0]), res[1:]
    j = 0
    for row, flag in zip(rows, flags, strict=True):
        if flag == "1":
            out.append(CreateOutcome(True, row["fingerprint"], PENDING, False))
        else:
            fp, status, published = rest[j : j + 3]
            j += 3
            out.append(CreateOutcome(False, as_text(fp), as_text(status), as_text(published) == "1"))


class Creation(StoreBase):
    """The producer side of :class:`~worker.store.BindStore`: create records, mark them published."""

    # Rows per create_many call (Redis runs one call at a time: a few ms each) and keys per
    # mark_published call.
    CREATE_BATCH = 500
    MARK_BATCH = 2000

    def create_many(self, rows: Sequence[dict[str, Any]], *, action: str = "bind") -> list[CreateOutcome]:
        """Create records (``key, task_id, request, fingerprint, pool, deadline, expires_at, ttl_s``),
        up to :attr:`CREATE_BATCH` per script call; existing keys are left untouched and reported."""
        return self.start_create_many(rows, action=action).result()

    def start_create_many(self, rows: Sequence[dict[str, Any]], *, action: str = "bind") -> PendingCreates:
        """:meth:`create_many` in two halves: the script calls go out now, in one write, and
        :meth:`PendingCreates.result` reads the answers; meanwhile Redis creates the records and
        the caller may do other work (a backfill validates its next chunk)."""
        check_data_key(self.r)
        ts = now_ms()
        calls = []
        for i in range(0, len(rows), self.CREATE_BATCH):
            part = rows[i : i + self.CREATE_BATCH]
            payload = _ROWS_JSON.encode(
                [
                    [
                        row["key"],
                        row["task_id"],
                        seal(row["request"]),
                        row["fingerprint"],
                        row["pool"],
                        str(row["deadline"]),
                        str(row["expires_at"]),
                        str(row["ttl_s"]),
                        *callback_fields(row),
                    ]
                    for row in part
                ]
            )
            record_keys = [self.watch_key, *[keys.bind_record(row["key"]) for row in part]]
            calls.append(CreateCall(part, record_keys, [ts, ts + self.watch_ms, action, payload]))
        pending = PendingCreates(self, calls)
        pending.send()
        return pending

    def mark_published(self, key_list: Sequence[str]) -> None:
        """Note that the messages of ``key_list`` are on the queue, a few thousand keys per call."""
        for i in range(0, len(key_list), self.MARK_BATCH):
            part = [keys.bind_record(k) for k in key_list[i : i + self.MARK_BATCH]]
            # the producer call's last write: WAIT
            self._run("mark_published", part, [], durable=i + self.MARK_BATCH >= len(key_list))
