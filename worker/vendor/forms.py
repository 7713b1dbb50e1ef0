"""The text forms of a request: API parameters as sent, and a bind's stored JSON, fingerprint and key.

Each works on a request's ``to_json_dict()`` (API names, set fields only, JSON-friendly values),
so the pydantic models and the bulk fast path (:mod:`worker.vendor.fastpath`) share them. The
stored forms are written out by hand (the values are text, booleans and ints): the bulk
producers compute them for a hundred thousand rows at a time.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from json.encoder import encode_basestring as json_quote
from typing import Any

_COMPACT_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))

# Parameter name -> its JSON text: the few names there are, each encoded once.
_NAME_JSON: dict[str, str] = {}
_NAME_JSON_MAX = 256


def api_text(value: Any) -> str:
    """A parameter as sent (:func:`api_params`): booleans ``true``/``false``, the rest ``str()``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def api_params(json_dict: Mapping[str, Any]) -> dict[str, str]:
    """``to_api_params()`` of the request whose ``to_json_dict()`` is ``json_dict``."""
    return {name: api_text(value) for name, value in json_dict.items()}


def _json_scalar(value: Any) -> str:
    """``json.dumps(value, ensure_ascii=False)`` of a str, bool or int."""
    if type(value) is str:
        return json_quote(value)
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) is int:
        return int.__repr__(value)
    return _COMPACT_JSON.encode(value)


def bind_request_json(json_dict: Mapping[str, Any]) -> str:
    """The stored form of a request, ``json.dumps(to_json_dict(), ensure_ascii=False,
    separators=(",", ":"))``, written out by hand (the values are text, booleans and ints)."""
    return bind_stored_forms(json_dict)[0]


def bind_fingerprint(json_dict: Mapping[str, Any]) -> str:
    """``BindAxbRequest.fingerprint()`` of the request whose ``to_json_dict()`` is ``json_dict``:
    SHA-256 of ``json.dumps(api_params(json_dict), sort_keys=True, ensure_ascii=False)``, written
    out by hand (every API parameter is text)."""
    return bind_stored_forms(json_dict)[1]


def bind_stored_forms(json_dict: Mapping[str, Any]) -> tuple[str, str]:
    """:func:`bind_request_json` and :func:`bind_fingerprint` of ``json_dict`` together (each
    name and text value JSON-encoded once)."""
    pairs: list[tuple[str, str, str, str]] = []  # name, "name", value as stored, value as sent
    for name, value in json_dict.items():
        quoted = _NAME_JSON.get(name)
        if quoted is None:
            quoted = json_quote(name)
            if len(_NAME_JSON) < _NAME_JSON_MAX:
                _NAME_JSON[name] = quoted
        if type(value) is str:
            stored = sent = json_quote(value)
        else:
            stored, sent = _json_scalar(value), json_quote(api_text(value))
        pairs.append((name, quoted, stored, sent))
    request = "{" + ",".join([quoted + ":" + stored for _n, quoted, stored, _s in pairs]) + "}"
    pairs.sort()  # by name (names are unique)
    canonical = "{" + ", ".join([quoted + ": " + sent for _n, quoted, _v, sent in pairs]) + "}"
    return request, hashlib.sha256(canonical.encode()).hexdigest()


def bind_default_key(json_dict: Mapping[str, Any]) -> str:
    """``BindAxbRequest.default_idempotency_key()`` of the request whose ``to_json_dict()`` is
    ``json_dict``: ``OutId`` if set, else ``h:`` + 32 hex digits of SHA-256(PoolKey|A|B|Expiration)."""
    out_id = json_dict.get("OutId")
    if out_id:
        return str(out_id)
    raw = "|".join(
        [json_dict["PoolKey"], json_dict["PhoneNoA"], json_dict["PhoneNoB"], json_dict["Expiration"]]
    )
    return "h:" + hashlib.sha256(raw.encode()).hexdigest()[:32]
