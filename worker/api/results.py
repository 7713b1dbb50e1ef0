"""Reading a result for the API: the record of any key (bind, unbind or extend) as the JSON
document that ``GET /v1/binds/{key}`` answers and the completion callback carries
(:mod:`worker.callbacks.result_document`), masked unless the token has the ``numbers`` scope."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.convertors import Convertor, register_url_convertor

from worker import keys
from worker.api.errors import ApiError
from worker.callbacks import bind_document, operation_document
from worker.errors import FieldProblem
from worker.producer import get_op_result, get_result
from worker.store import TERMINAL

# A bind key is at most 200 characters; an extend's key adds its prefix and the new Expiration.
MAX_PATH_KEY_LENGTH = 240


class KeyConvertor(Convertor[str]):
    """``{key:bindkey}`` in a route: any key, slashes included (``OutId`` may hold one), but not
    ending in ``/unbind`` or ``/extend``, so that ``GET /v1/binds/{key}`` never claims the
    lifecycle routes' paths (and a 405 names the right methods)."""

    regex = r".+?(?<!/unbind)(?<!/extend)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return quote(value, safe=":")


register_url_convertor("bindkey", KeyConvertor())


def checked_key(key: str) -> str:
    """A key from the path, or 422 naming ``key`` (a bad key is a client error, never a 500)."""
    if not key or len(key) > MAX_PATH_KEY_LENGTH or not key.isprintable():
        raise ApiError(
            422,
            "isv.INVALID_PARAMETERS",
            f"key: must be 1-{MAX_PATH_KEY_LENGTH} printable characters",
            problems=[
                FieldProblem(
                    "key", "isv.INVALID_PARAMETERS", f"must be 1-{MAX_PATH_KEY_LENGTH} printable characters"
                )
            ],
        )
    return key


def location(key: str) -> str:
    """The URL path of a key's result."""
    return "/v1/binds/" + quote(key, safe=":")


def load_document(key: str, *, show_numbers: bool) -> dict[str, Any] | None:
    """The result document of ``key`` (bind or operation), or None when there is no record."""
    if keys.action_of(key) == "bind":
        bind = get_result(key)
        return bind_document(bind, show_numbers=show_numbers) if bind is not None else None
    op = get_op_result(key)
    return operation_document(op, show_numbers=show_numbers) if op is not None else None


def is_done(document: dict[str, Any]) -> bool:
    return document.get("status") in TERMINAL
