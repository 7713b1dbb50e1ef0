"""``make demo``: the whole pipeline on this machine, no credentials, under a minute.

Uses ``AXB_REDIS_URL`` when a Redis answers there, else starts a throwaway ``redis-server``;
runs the Dypls simulator and one worker; backfills the sample file (a few illegal numbers, an
unknown pool, one flaky call); prints the outcomes and the dead letters.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import redis
from rich.console import Console
from rich.table import Table

from worker.backfill import safe_writer, unescape_cell
from worker.connections import redis_client
from worker.masking import mask_number
from worker.settings import Settings
from worker.vendor import normalize_phone

SAMPLE = Path(__file__).with_name("samples") / "sample.csv"
console = Console(width=None if sys.stdout.isatty() else 130)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _redis_ok(url: str) -> bool:
    try:
        probe = Settings(redis_url=url, redis_retry_s=0)
        client = redis_client(probe, socket_timeout_s=1, connect_timeout_s=1)
        client.ping()
        client.close()
        return True
    except (redis.RedisError, OSError, ValueError):
        return False


def _wait_http(url: str, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=0.5)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def main() -> int:
    started = time.monotonic()
    procs: list[subprocess.Popen[bytes]] = []
    workdir = Path(tempfile.mkdtemp(prefix="axb-demo-"))
    env = dict(os.environ)
    try:
        url = env.get("AXB_REDIS_URL", "redis://127.0.0.1:6379/0")
        if _redis_ok(url):
            console.print(f"Redis: using {url}")
        else:
            exe = shutil.which("redis-server")
            if exe is None:
                console.print(
                    "[red]No Redis at AXB_REDIS_URL and no redis-server installed.[/red] "
                    "Install it (apt-get install redis-server) or set AXB_REDIS_URL."
                )
                return 2
            port = _free_port()
            procs.append(
                subprocess.Popen(
                    [exe, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(workdir)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            url = f"redis://127.0.0.1:{port}/0"
            for _ in range(100):
                if _redis_ok(url):
                    break
                time.sleep(0.05)
            console.print(f"Redis: started a throwaway redis-server on port {port}")

        sim_port = _free_port()
        env.update(
            {
                "AXB_REDIS_URL": url,
                "AXB_ENDPOINT": f"http://127.0.0.1:{sim_port}",
                "AXB_ACCESS_KEY_ID": "test-access-key-id",
                "AXB_ACCESS_KEY_SECRET": "test-access-key-secret",
                "AXB_RATE_LIMIT_QPS": env.get("AXB_RATE_LIMIT_QPS", "50"),
                "AXB_BACKOFF_INITIAL_S": "0.2",
                "AXB_QUEUE": f"axb.demo.{uuid.uuid4().hex[:6]}",
            }
        )
        axb = [sys.executable, "-m", "worker.cli"]
        procs.append(
            subprocess.Popen(
                [
                    *axb,
                    "simulator",
                    "--port",
                    str(sim_port),
                    "--latency-ms",
                    "20",
                    "--jitter-ms",
                    "5",
                    "--seed",
                    "7",
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        _wait_http(f"http://127.0.0.1:{sim_port}/_simulator/ledger")
        # One flaky call: the first BindAxb is answered with a transient provider fault.
        httpx.post(
            f"http://127.0.0.1:{sim_port}/_simulator/faults",
            json={"force_code": "isp.SYSTEM_ERROR", "force_count": 1},
            timeout=5,
        )
        console.print(f"Simulator: http://127.0.0.1:{sim_port} (20 ms latency, first bind fails once)")

        worker_log = (workdir / "worker.log").open("wb")
        procs.append(
            subprocess.Popen(
                [*axb, "worker", "-c", "8", "-l", "WARNING"],
                env=env,
                stdout=worker_log,
                stderr=subprocess.STDOUT,
            )
        )
        console.print("Worker: started (threads pool, 8 slots)")

        # A per-run copy of the sample, so repeated demos against one Redis start afresh.
        run = uuid.uuid4().hex[:6]
        sample = workdir / "sample.csv"
        with SAMPLE.open(newline="") as src, sample.open("w", newline="") as dst:
            reader = csv.DictReader(src)
            fields = list(reader.fieldnames or [])
            writer = safe_writer(dst)  # every CSV we write escapes formula cells (read back as written)
            writer.writerow(fields)
            # Future Expirations move to tomorrow (at most 366 days ahead, never stale); the row
            # that shows a past one keeps it.
            tomorrow = (datetime.now(UTC) + timedelta(hours=8, days=1)).strftime("%Y-%m-%d %H:%M:%S")
            for row in reader:
                row["OutId"] = f"{row['OutId']}-{run}"
                row["Expiration"] = min(row["Expiration"], tomorrow)  # one format: text order is time order
                writer.writerow([row[f] for f in fields])

        console.print(f"\n$ axb backfill {SAMPLE.name} --wait --json")
        out = subprocess.run(
            [*axb, "backfill", str(sample), "--wait", "--json"],
            env=env,
            capture_output=True,
            timeout=90,
            check=False,
        )
        summary = json.loads(out.stdout or b"{}")
        console.print_json(data=summary)
        _print_outcomes(env, sample)
        console.print(
            f"\n[bold]Done in {time.monotonic() - started:.1f} s.[/bold] "
            "Try: axb result <key>, axb dlq list --json (with the same AXB_ env)."
        )
        return 0 if summary.get("unfinished", 1) == 0 else 1
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(workdir, ignore_errors=True)


def _print_outcomes(env: dict[str, str], sample: Path) -> None:
    os.environ.update({k: v for k, v in env.items() if k.startswith("AXB_")})
    from worker.deadletters import DeadLetters
    from worker.producer import get_result
    from worker.runtime import get_runtime

    table = Table("line", "OutId", "A", "B", "status", "X (SecretNo)", "code", "attempts", title="Outcomes")
    rejects = {}
    rej_path = sample.with_name(sample.name + ".rejects.csv")
    if rej_path.exists():
        with rej_path.open(newline="") as fh:
            for r in csv.DictReader(fh):
                rejects[int(r["line"])] = r
    with sample.open(newline="") as fh:
        reader = csv.DictReader(fh)
        for line, written in enumerate(reader, start=2):
            row = {k: unescape_cell(v) for k, v in written.items()}  # as safe_writer wrote them
            a, b = (mask_number(normalize_phone(row[f]) or row[f]) for f in ("PhoneNoA", "PhoneNoB"))
            if line in rejects:
                table.add_row(
                    str(line), row["OutId"], a, b, "[red]rejected[/red]", "", rejects[line]["code"], "0"
                )
                continue
            res = get_result(row["IdempotencyKey"] or row["OutId"])
            if res is None:
                table.add_row(str(line), row["OutId"], a, b, "?", "", "", "")
                continue
            colour = "green" if res.ok else "red"
            x = mask_number(res.dto.secret_no) if res.dto else ""
            table.add_row(
                str(line),
                row["OutId"],
                a,
                b,
                f"[{colour}]{res.status}[/{colour}]",
                x,
                res.code,
                str(res.attempts),
            )
    console.print(table)
    dl = Table("id", "key", "code", "attempts", "message", title="Dead letters (this run)")
    run_keys = set()
    with sample.open(newline="") as fh:
        run_keys = {r["OutId"] for r in csv.DictReader(fh)}
    for e in DeadLetters(get_runtime().redis).entries(limit=10_000):
        if e.key in run_keys:
            dl.add_row(e.id, e.key, e.code, str(e.attempts), e.message[:70])
    console.print(dl)


if __name__ == "__main__":
    raise SystemExit(main())
