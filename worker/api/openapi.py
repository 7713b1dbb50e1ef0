"""The OpenAPI 3.1 document of ``axb api``; ``python -m worker.api.openapi`` rewrites the committed
copy, ``docs/openapi.json`` (a test fails when it is stale)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from worker.api.app import create_app

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def document() -> dict[str, Any]:
    return create_app().openapi()


def text() -> str:
    return json.dumps(document(), indent=2, ensure_ascii=False, sort_keys=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0]) if args else COMMITTED
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text())
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
