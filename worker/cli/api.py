"""``axb api``: the HTTP door for producers in any language (see :mod:`worker.api`)."""

from __future__ import annotations

import click


@click.command("api")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="processes")
def api_command(host: str, port: int, workers: int) -> None:
    """Serve the HTTP API (OpenAPI at /openapi.json); every /v1 route needs `axb token` tokens."""
    from worker.api.server import serve

    serve(host=host, port=port, workers=workers)
