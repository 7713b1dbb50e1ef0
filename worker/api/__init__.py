"""``axb api``: the authenticated HTTP API for producers in any language.

One concept per module:

- :mod:`worker.api.app` -- the app factory (``create_app``);
- :mod:`worker.api.server` -- running it with uvicorn;
- :mod:`worker.api.auth` -- bearer tokens and scopes on every ``/v1`` route;
- :mod:`worker.api.ratelimit` -- per-token request limits (429);
- :mod:`worker.api.body_limit` -- the cap on request bodies (413);
- :mod:`worker.api.errors` -- the one error shape and every status code;
- :mod:`worker.api.schemas` -- the JSON bodies (and so ``/openapi.json``);
- :mod:`worker.api.routes_binds` -- ``POST /v1/binds``, ``POST /v1/binds:batch``, ``GET /v1/binds/{key}``;
- :mod:`worker.api.routes_lifecycle` -- ``POST /v1/binds/{key}/unbind`` and ``/extend``;
- :mod:`worker.api.routes_health` -- ``/healthz`` and ``/readyz``;
- :mod:`worker.api.results`, :mod:`worker.api.waiting` -- reading results, ``?wait``;
- :mod:`worker.api.openapi` -- writing the committed ``docs/openapi.json``.
"""
