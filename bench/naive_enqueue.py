"""The enqueue baseline: read a backfill CSV and call the naive task's ``.delay()`` once per row.

    python -m bench.naive_enqueue FILE      # prints {"rows": ..., "seconds": ...} as JSON

Timed like ``axb backfill`` times itself: from opening the file to the last message published.
"""

from __future__ import annotations

import csv
import json
import sys
import time


def main() -> None:
    from bench.naive_app import bind_axb

    started = time.perf_counter()
    rows = 0
    with open(sys.argv[1], newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            bind_axb.delay(row["PoolKey"], row["PhoneNoA"], row["PhoneNoB"], row["Expiration"], row["OutId"])
            rows += 1
    elapsed = time.perf_counter() - started
    print(
        json.dumps({"rows": rows, "seconds": round(elapsed, 3), "rows_per_second": round(rows / elapsed, 1)})
    )


if __name__ == "__main__":
    main()
