"""``axb call``, ``axb enqueue`` and ``axb result``: one bind, sent directly or through the queue.

Every BindAxb parameter is a flag (:func:`bind_options`), taken as text and checked by the
request model. Phone numbers are masked in every output unless ``--show-numbers`` is given.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from worker.cli.errors import fail, fail_invalid, refuse
from worker.cli.options import (
    expiration_in,
    expires_in_option,
    follow_options,
    json_option,
    show_numbers_option,
)
from worker.cli.output import emit, err_console, print_table, report_handle
from worker.errors import AxbError, InvalidRequestError, VendorError

F = TypeVar("F", bound=Callable[..., Any])

# (option, API name, click type, help)
BIND_FIELDS: list[tuple[str, str, Any, str]] = [
    ("--pool-key", "PoolKey", str, "number pool key, e.g. FC100000001"),
    ("--phone-no-a", "PhoneNoA", str, "phone A (mobile or landline with area code)"),
    ("--phone-no-b", "PhoneNoB", str, "phone B"),
    ("--expiration", "Expiration", str, "yyyy-MM-dd HH:mm:ss, China Standard Time (UTC+8)"),
    ("--phone-no-x", "PhoneNoX", str, "bind on this X number"),
    ("--expect-city", "ExpectCity", str, "preferred city for X, without suffix (北京)"),
    ("--is-recording-enabled", "IsRecordingEnabled", str, "record calls (true/false)"),
    ("--out-id", "OutId", str, "business id, echoed in call records (default idempotency key)"),
    ("--out-order-id", "OutOrderId", str, "order id"),
    ("--call-display-type", "CallDisplayType", str, "fixed value 1"),
    (
        "--call-restrict",
        "CallRestrict",
        str,
        "CONTROL_AX_DISABLE, CONTROL_BX_DISABLE or CONTROL_CLEAR_DISABLE",
    ),
    ("--call-timeout", "CallTimeout", str, "ring timeout in seconds (5-20)"),
    ("--asr-status", "ASRStatus", str, "speech recognition on/off (true/false)"),
    ("--asr-model-id", "ASRModelId", str, "ASR model id"),
    ("--ring-config", "RingConfig", str, "ring configuration (JSON text)"),
    ("--dtmf-config", "DtmfConfig", str, "DTMF configuration (JSON text)"),
]


def bind_options(func: F) -> F:
    """Add one flag per BindAxb parameter, plus ``--expires-in``.

    Every flag is taken as text and checked by the request model, so a bad value is refused
    like any other bad input: naming the API field and the vendor code it would cause."""
    for flag, _api, typ, help_ in reversed(BIND_FIELDS):
        func = click.option(flag, type=typ, default=None, help=help_)(func)
    return expires_in_option("instead of --expiration: this many minutes from now")(func)


def bind_params(kw: dict[str, Any]) -> dict[str, Any]:
    """The BindAxb parameters (API names) from :func:`bind_options`' flags, popped from ``kw``."""
    out: dict[str, Any] = {}
    for flag, api, _typ, _help in BIND_FIELDS:
        value = kw.pop(flag[2:].replace("-", "_"), None)
        if value is not None:
            out[api] = value
    expires_in = kw.pop("expires_in", None)
    if expires_in is not None and "Expiration" not in out:
        out["Expiration"] = expiration_in(expires_in)
    return out


# --- axb call ---------------------------------------------------------------------------------


@click.group("call")
def call_group() -> None:
    """Direct, synchronous, signed vendor calls: no queue (credentials checks, reproductions)."""


@call_group.command("bind")
@bind_options
@show_numbers_option("print phone numbers unmasked")
def call_bind(show_numbers: bool, **kw: Any) -> None:
    """Call BindAxb once and print the JSON response; non-zero exit on any non-OK code."""
    from worker.vendor import DyplsClient, parse_bind_request

    try:
        request = parse_bind_request(bind_params(kw))
    except InvalidRequestError as err:
        fail_invalid(err)
    with DyplsClient() as client:
        try:
            response = client.bind_axb(request)
        except VendorError as err:
            emit(
                {
                    "RequestId": err.request_id,
                    "Code": err.code,
                    "Message": err.vendor_message,
                    "HttpStatus": err.http_status,
                },
                show_numbers,
            )
            err_console.print(f"[red]{err.code}[/red] ({err.handling.value})", highlight=False)
            sys.exit(1)
    emit(response.model_dump(by_alias=True, exclude_none=True), show_numbers)


@call_group.command("unbind")
@click.option("--pool-key", required=True)
@click.option("--secret-no", required=True, help="the X number")
@click.option("--subs-id", required=True)
@show_numbers_option()
def call_unbind(pool_key: str, secret_no: str, subs_id: str, show_numbers: bool) -> None:
    """Call UnbindSubscription once (isv.SUBS_NOT_EXIST counts as done)."""
    from worker.vendor import DyplsClient

    with DyplsClient() as client:
        try:
            response = client.unbind_subscription(pool_key, secret_no, subs_id)
        except VendorError as err:
            emit({"RequestId": err.request_id, "Code": err.code, "Message": err.vendor_message}, show_numbers)
            sys.exit(1)
    emit(response.model_dump(by_alias=True), show_numbers)


# --- axb enqueue / result ---------------------------------------------------------------------


@click.command("enqueue")
@bind_options
@click.option("--key", default=None, help="idempotency key (default: OutId, else a hash of the request)")
@follow_options("wait until succeeded or dead-lettered")
def enqueue_command(
    key: str | None, wait: bool, timeout: float, as_json: bool, show_numbers: bool, **kw: Any
) -> None:
    """Validate and enqueue one bind."""
    from worker.producer import enqueue_bind

    try:
        handle = enqueue_bind(bind_params(kw), idempotency_key=key)
    except AxbError as err:
        refuse(err, as_json)
    info: dict[str, Any] = {"key": handle.key, "task_id": handle.task_id, "created": handle.created}
    report_handle(handle, info, wait=wait, timeout=timeout, as_json=as_json, show_numbers=show_numbers)


@click.command("result")
@click.argument("key")
@json_option()
@show_numbers_option()
def result_command(key: str, as_json: bool, show_numbers: bool) -> None:
    """Show a bind's status and SecretBindDTO by idempotency key."""
    from worker.producer import get_result

    res = get_result(key)
    if res is None:
        fail(f"no bind with key {key!r}", 4)
    info = res.as_dict(show_numbers=show_numbers)
    if as_json:
        emit(info, show_numbers)
    else:
        print_table(info, show_numbers)
