"""Completion callbacks: POST a finished bind's (or unbind's, or extend's) result to its URL.

- :mod:`~worker.callbacks.delivery`: the story of one delivery (task ``axb.callback``,
  :func:`deliver`): scheduled with the outcome, retried, dead-lettered;
- :mod:`~worker.callbacks.post`: one POST (HTTP client, headers, the pinned send);
- :mod:`~worker.callbacks.document`: the JSON document (also the API's ``GET /v1/binds/{key}``),
  re-exported here as ``result_document``;
- :mod:`~worker.callbacks.signature`: the ``X-Axb-Signature`` header;
- :mod:`~worker.callbacks.url`: which callback URLs are accepted, and where a delivery connects.
"""

from worker.callbacks import document as result_document
from worker.callbacks.delivery import deliver, target_of
from worker.callbacks.document import bind_document, document, iso_utc, operation_document
from worker.callbacks.post import delivery_id, header_key, reset_process_state, send_pinned
from worker.callbacks.signature import signature, signature_header, verify
from worker.callbacks.url import MAX_URL_LENGTH, Target, UrlChecker, check_callback_url, resolve_target

__all__ = [
    "MAX_URL_LENGTH",
    "Target",
    "UrlChecker",
    "bind_document",
    "check_callback_url",
    "deliver",
    "delivery_id",
    "document",
    "header_key",
    "iso_utc",
    "operation_document",
    "reset_process_state",
    "resolve_target",
    "result_document",
    "send_pinned",
    "signature",
    "signature_header",
    "target_of",
    "verify",
]
