"""``axb console``: the on-call web console (see :mod:`worker.console`), served by the API's app.

``axb api`` serves the console too, at ``/console``.
"""

from __future__ import annotations

import click


@click.command("console")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", default=8080, show_default=True, type=int)
def console_command(host: str, port: int) -> None:
    """Serve the on-call console at http://HOST:PORT/console (log in with an `operate` token)."""
    from worker.api.server import serve

    serve(host=host, port=port, workers=1)
