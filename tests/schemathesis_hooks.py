"""Loaded into the schemathesis process by tests/test_schemathesis.py (SCHEMATHESIS_HOOKS).

CPython 3.11.7 can raise ``SystemError: AST constructor recursion depth mismatch`` from
``ast.parse`` when called deep in a stack (fixed in later 3.11 releases). Hypothesis parses
source files only to *describe* a lambda in its reprs; schemathesis' coverage phase hits that,
and the run reports a runtime error of its own, not of our API. A description is all that is
lost: fall back to hypothesis' own "unknown" description.
"""

from __future__ import annotations

from typing import Any

from hypothesis.internal import lambda_sources

_describe = lambda_sources._lambda_description


def _tolerant(f: Any, *args: Any, **kwargs: Any) -> str:
    try:
        return str(_describe(f, *args, **kwargs))
    except SystemError:
        return "lambda: <unknown>"


lambda_sources._lambda_description = _tolerant
