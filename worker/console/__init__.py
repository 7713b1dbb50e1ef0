"""The on-call web console: overview, dead letters, binds, orphans, audit, at ``/console``.

Server-rendered (Jinja2 templates, one small static script for live updates, no build step),
mounted on the HTTP API's app by :func:`mount`, so ``axb api`` and ``axb console`` both serve it.

Security: log in with an API token that has the ``operate`` scope; the session lives in Redis
(:mod:`worker.console.session`) and the browser holds only its id, in an HttpOnly,
SameSite=Strict cookie; every state-changing form carries a CSRF token; every response has a
strict Content-Security-Policy (:mod:`worker.console.security`). Numbers are masked on every
page unless a user whose token has the ``numbers`` scope asks for them on that page.
"""

from __future__ import annotations

from worker.console.app import mount

__all__ = ["mount"]
