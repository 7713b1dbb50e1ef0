"""``python -m bench --only api``: the HTTP door (``axb api``), measured in one run.

- **Single POST /v1/binds**: closed-loop throughput (16 clients, keep-alive, no worker running),
  then an open loop at 200 requests/s with one worker binding at 20 ms: p50/p99 of the POST,
  timed from each request's *scheduled* send (a late send counts against us).
- **Batch POST /v1/binds:batch** (1,000 items a call) rows/s against the Python
  ``enqueue_binds`` over the same number of rows, a minute apart in the same run.
- **POST → callback** at 20 ms vendor latency: p99 from the POST to the callback's arrival at a
  local receiver (needs the worker's callback delivery, ``worker.callbacks``).

Load comes from this process (``http.client`` in threads: cheaper per request than httpx), on the
same 2 cores as the API, Redis, the simulator and the worker.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import queue
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import redis

from bench.drains import OURS_QUEUE, point_producer, start_ours, wait_terminal
from bench.harness import Proc, Stack, bind_requests, cpu_s, free_port
from bench.report import Row

API_QUEUE = OURS_QUEUE  # the same queue as the Python producer: the same worker serves both
CLIENTS = 16


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[max(0, min(len(s) - 1, int(-(-q * len(s) // 100)) - 1))]


class Door:
    """A running ``axb api`` and a token for it."""

    def __init__(self, stack: Stack, proc: Proc, port: int, token: str) -> None:
        self.stack, self.proc, self.port, self.token = stack, proc, port, token

    def conn(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def post(self, conn: http.client.HTTPConnection, path: str, body: Any) -> tuple[int, bytes]:
        data = json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        conn.request("POST", path, body=data, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()


def start_door(stack: Stack, **env: str) -> Door:
    from worker.tokens import TokenStore

    client = redis.Redis.from_url(stack.redis_url)
    token, _ = TokenStore(client).create(f"bench-{time.monotonic_ns()}", "bind,read,operate")
    client.close()
    port = free_port()
    proc = stack.spawn(
        "api",
        [stack_python(), "-m", "worker.cli", "api", "--port", str(port)],
        env=stack.env(
            AXB_QUEUE=API_QUEUE,
            AXB_API_RATE_LIMIT_QPS="1000000",
            AXB_API_RATE_LIMIT_BURST="100000",
            AXB_LOG_LEVEL="WARNING",
            **env,
        ),
    )
    door = Door(stack, proc, port, token)
    deadline = time.monotonic() + 60
    while True:
        try:
            c = door.conn()
            c.request("GET", "/readyz")
            if c.getresponse().status == 200:
                c.close()
                return door
        except OSError:
            pass
        if proc.popen.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("axb api did not start (bench/_out/logs/api.log)")
        time.sleep(0.1)


def stack_python() -> str:
    import sys

    return sys.executable


def _closed_loop(
    door: Door, bodies: list[dict[str, Any]], clients: int
) -> tuple[float, list[float], dict[int, int]]:
    """Send every body once from ``clients`` threads as fast as answers come.

    Returns (seconds, latencies in ms, statuses)."""
    todo: queue.Queue[dict[str, Any]] = queue.Queue()
    for b in bodies:
        todo.put(b)
    lat: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()

    def run() -> None:
        conn = door.conn()
        mine: list[float] = []
        mine_status: dict[int, int] = {}
        while True:
            try:
                body = todo.get_nowait()
            except queue.Empty:
                break
            t = time.perf_counter()
            status, _ = door.post(conn, "/v1/binds", body)
            mine.append((time.perf_counter() - t) * 1000)
            mine_status[status] = mine_status.get(status, 0) + 1
        conn.close()
        with lock:
            lat.extend(mine)
            for k, v in mine_status.items():
                statuses[k] = statuses.get(k, 0) + v

    threads = [threading.Thread(target=run) for _ in range(clients)]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return time.perf_counter() - t0, lat, statuses


def _open_loop(
    door: Door, bodies: list[dict[str, Any]], rate: float, on_sent: Callable[[str, float], None] | None = None
) -> tuple[list[float], dict[int, int], float]:
    """POST ``bodies`` at ``rate``/s on schedule; latency from the scheduled moment (ms)."""
    slots: queue.Queue[tuple[float, dict[str, Any]] | None] = queue.Queue()
    lat: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    behind = [0.0]

    def run() -> None:
        conn = door.conn()
        while (item := slots.get()) is not None:
            due, body = item
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            if on_sent is not None:
                on_sent(str(body["OutId"]), time.time() - max(0.0, time.perf_counter() - due))
            status, _ = door.post(conn, "/v1/binds", body)
            took = (time.perf_counter() - due) * 1000
            with lock:
                lat.append(took)
                statuses[status] = statuses.get(status, 0) + 1
        conn.close()

    threads = [threading.Thread(target=run) for _ in range(CLIENTS)]
    for th in threads:
        th.start()
    start = time.perf_counter() + 0.2
    for i, body in enumerate(bodies):
        due = start + i / rate
        # Hand each slot out just before it is due, so that a free thread takes it on time.
        pause = due - 0.005 - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        behind[0] = max(behind[0], time.perf_counter() - due)
        slots.put((due, body))
    for _ in threads:
        slots.put(None)
    for th in threads:
        th.join()
    return lat, statuses, behind[0]


class _Receiver(BaseHTTPRequestHandler):
    arrivals: dict[str, float] = {}  # noqa: RUF012 (one receiver per run)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        at = time.time()
        try:
            doc = json.loads(body)
        except ValueError:
            doc = {}
        key = str(doc.get("key") or "")
        if doc.get("status") in ("succeeded", "dead_lettered"):
            self.arrivals.setdefault(key, at)
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


def http_door(stack: Stack, cfg: Any) -> list[Row]:
    n_single = 1000 if cfg.quick else 4000
    open_s = 5.0 if cfg.quick else 15.0
    rate = 200.0
    batch_rows = 5000 if cfg.quick else 20_000
    rows: list[Row] = []

    # 1. Single POST throughput: no worker, so the door and Redis have the cores.
    stack.fresh(latency_ms=cfg.vendor_latency_ms)
    point_producer(stack)
    door = start_door(stack)
    with stack.running([door.proc]):
        warm = bind_requests(200, "hw", start=800_000)
        _closed_loop(door, warm, CLIENTS)
        cpu0 = cpu_s(door.proc.pids())
        secs, lat, statuses = _closed_loop(door, bind_requests(n_single, "hs"), CLIENTS)
        cpu_per_req_ms = (cpu_s(door.proc.pids()) - cpu0) / n_single * 1000
        rps = n_single / secs
        stack.log(f"api: {rps:,.0f} POST/s closed loop ({CLIENTS} clients), statuses {statuses}")
        rows.append(
            Row(
                f"api: POST /v1/binds throughput, {CLIENTS} clients, 1 API process, no worker",
                f"{rps:,.0f} requests/s",
                f"p50 {_pct(lat, 50):.1f} ms, p99 {_pct(lat, 99):.1f} ms",
                "",
                None,
                round(rps, 1),
                "requests/s",
                details={
                    "requests": n_single,
                    "statuses": statuses,
                    "api_cpu_ms_per_request": round(cpu_per_req_ms, 3),
                },
            )
        )

        # 2. Open loop at 200/s with a worker binding (20 ms vendor).
        workers = start_ours(
            stack, "api-lat", processes=1, concurrency=cfg.concurrency, rate_qps=None, burst=None
        )
        with stack.running(workers):
            # The worker is up (its start-up CPU spent) once it has bound a few binds.
            warm = bind_requests(20, "how", start=810_000)
            _closed_loop(door, warm, 4)
            wait_terminal(stack, [b["OutId"] for b in warm], workers, stall_s=90, poll_s=0.2)
            total = int(rate * open_s)
            lat, statuses, behind = _open_loop(door, bind_requests(total, "ho"), rate)
            ok = statuses.get(202, 0)
            p50, p99 = _pct(lat, 50), _pct(lat, 99)
            stack.log(f"api: open loop {rate:g}/s: p50 {p50:.1f} ms, p99 {p99:.1f} ms, statuses {statuses}")
            rows.append(
                Row(
                    f"api: POST /v1/binds latency at {rate:g} requests/s (worker binding at 20 ms): p99",
                    f"{p99:.1f} ms",
                    f"p50 {p50:.1f} ms",
                    "",
                    None,
                    round(p99, 1),
                    "ms",
                    details={
                        "requests": total,
                        "accepted_202": ok,
                        "statuses": statuses,
                        "p50_ms": round(p50, 2),
                        "p90_ms": round(_pct(lat, 90), 2),
                        "p99_ms": round(p99, 2),
                        "max_ms": round(max(lat), 2),
                        "scheduler_behind_max_s": round(behind, 4),
                        "load_average_after": "/".join(f"{x:.1f}" for x in os.getloadavg()),
                    },
                )
            )

        # 3. Batch rows/s against enqueue_binds, same rows count, no worker.
        stack.r.flushall()
        client = redis.Redis.from_url(stack.redis_url)
        from worker.tokens import TokenStore

        door.token, _ = TokenStore(client).create("bench-batch", "bind")
        client.close()
        # Interleaved, 1,000 rows at a time: on a shared machine both sides see the same load.
        point_producer(stack, API_QUEUE)
        from worker.producer import enqueue_binds

        py_rows, bodies = bind_requests(batch_rows, "py"), bind_requests(batch_rows, "hb")
        conn = door.conn()
        py_s = http_s = 0.0
        refused = 0
        for i in range(0, batch_rows, 1000):
            t0 = time.perf_counter()
            done = enqueue_binds(py_rows[i : i + 1000])
            py_s += time.perf_counter() - t0
            t0 = time.perf_counter()
            status, raw = door.post(conn, "/v1/binds:batch", {"items": bodies[i : i + 1000]})
            out = json.loads(raw)
            http_s += time.perf_counter() - t0
            if status != 200 or out.get("rejected") or done.rejected or out.get("created") != done.created:
                refused += 1
        conn.close()
        py_rate = batch_rows / py_s
        http_rate = batch_rows / http_s
        ratio = http_rate / py_rate
        stack.log(f"api: batch {http_rate:,.0f} rows/s vs enqueue_binds {py_rate:,.0f} rows/s ({ratio:.2f}×)")
        if refused:
            raise RuntimeError(f"{refused} batch calls refused or with rejected items")
        rows.append(
            Row(
                f"api: enqueue_binds (baseline), {batch_rows:,} rows in calls of 1,000, in-process",
                f"{py_rate:,.0f} rows/s",
                "baseline",
                "",
                None,
                round(py_rate, 1),
                "rows/s",
            )
        )
        rows.append(
            Row(
                f"api: POST /v1/binds:batch, {batch_rows:,} rows in calls of 1,000, one client",
                f"{http_rate:,.0f} rows/s",
                f"{ratio:.2f}× enqueue_binds",
                "≥ 0.5× enqueue_binds",
                ratio >= 0.5,
                round(http_rate, 1),
                "rows/s",
                round(ratio, 3),
            )
        )

    # 4. POST -> callback at 20 ms vendor latency.
    rows.append(_callback_latency(stack, cfg))
    cfg.notes.append(
        "HTTP door: one `axb api` process (uvicorn, 1 worker process); load from the bench process with "
        f"http.client in {CLIENTS} keep-alive threads; a token with a limit far above the load. Open-loop "
        "latencies are timed from each request's scheduled send."
    )
    return rows


def _callback_latency(stack: Stack, cfg: Any) -> Row:
    desc = "api: POST → callback at 20 ms vendor latency, 50 binds/s: p99"
    target = cfg.vendor_latency_ms + 50
    if importlib.util.find_spec("worker.callbacks") is None:
        return Row(
            desc,
            "",
            target=f"≤ vendor + 50 ms = {target:g} ms",
            error="not measured: no callback delivery (worker.callbacks) on this branch",
        )
    stack.fresh(latency_ms=cfg.vendor_latency_ms)
    _Receiver.arrivals = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cb_url = f"http://127.0.0.1:{server.server_address[1]}/cb"
    extra = {"AXB_CALLBACK_ALLOW_PRIVATE": "true", "AXB_CALLBACK_SECRET": "bench-callback-secret"}
    door = start_door(stack, **extra)
    workers = start_ours(
        stack, "api-cb", processes=1, concurrency=cfg.concurrency, rate_qps=None, burst=None, env=extra
    )
    sent: dict[str, float] = {}
    try:
        with stack.running([door.proc, *workers]):
            total = 150 if cfg.quick else 500
            bodies = [{**b, "CallbackUrl": cb_url} for b in bind_requests(total, "hc")]
            warm = [{**b, "CallbackUrl": cb_url} for b in bind_requests(20, "hcw", start=700_000)]
            _open_loop(door, warm, 50.0)
            wait_terminal(stack, [b["OutId"] for b in warm], workers, stall_s=60, poll_s=0.2)
            _open_loop(door, bodies, 50.0, on_sent=sent.__setitem__)
            deadline = time.monotonic() + 60
            while len([k for k in sent if k in _Receiver.arrivals]) < total and time.monotonic() < deadline:
                time.sleep(0.1)
    finally:
        server.shutdown()
    lat = [(_Receiver.arrivals[k] - t) * 1000 for k, t in sent.items() if k in _Receiver.arrivals]
    if len(lat) < total:
        return Row(
            desc, "", target=f"≤ {target:g} ms", error=f"{total - len(lat)} of {total} callbacks never came"
        )
    p50, p99 = _pct(lat, 50), _pct(lat, 99)
    # Where the time goes: POST → the record's succeeded_at (the bind), then → the callback's arrival.
    from worker import keys as k

    pipe = stack.r.pipeline(transaction=False)
    for key in sent:
        pipe.hget(k.bind_record(key), "succeeded_at")
    bound_ms, deliver_ms = [], []
    for (key, t), done_at in zip(sent.items(), pipe.execute(), strict=True):
        if done_at:
            bound_ms.append(int(done_at) - t * 1000)
            deliver_ms.append(_Receiver.arrivals[key] * 1000 - int(done_at))
    stack.log(f"api: POST → callback p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    return Row(
        desc,
        f"{p99:.1f} ms",
        f"vendor {cfg.vendor_latency_ms:g} + {p99 - cfg.vendor_latency_ms:.1f} ms (p50 {p50:.1f} ms)",
        f"≤ vendor + 50 ms = {target:g} ms",
        p99 <= target,
        round(p99, 1),
        "ms",
        details={
            "callbacks": total,
            "p50_ms": round(p50, 2),
            "p99_ms": round(p99, 2),
            "max_ms": round(max(lat), 2),
            "post_to_succeeded_p50_ms": round(_pct(bound_ms, 50), 2),
            "post_to_succeeded_p99_ms": round(_pct(bound_ms, 99), 2),
            "succeeded_to_callback_p50_ms": round(_pct(deliver_ms, 50), 2),
            "succeeded_to_callback_p99_ms": round(_pct(deliver_ms, 99), 2),
            "load_average_after": "/".join(f"{x:.1f}" for x in os.getloadavg()),
        },
    )
