"""Logging set-up: every record is masked before any handler sees it."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from worker.masking import mask_obj, mask_text
from worker.settings import Settings


class MaskingFilter(logging.Filter):
    """Replace phone numbers in the message and its arguments with ``150****0000``."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep the raw text, masked
            message = str(record.msg)
        record.msg = mask_text(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = mask_text(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = mask_text(record.exc_text)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_text:
            out["exc"] = record.exc_text
        return json.dumps(mask_obj(out), ensure_ascii=False)


_FILTER = MaskingFilter()


def install_masking(logger: logging.Logger | None = None) -> None:
    """Mask every record that reaches the handlers of ``logger`` (default: root)."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)


def setup_logging(settings: Settings) -> None:
    root = logging.getLogger()
    if not any(isinstance(h, logging.StreamHandler) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            JsonFormatter()
            if settings.log_json
            else logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
        )
        root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    # httpx logs every request at INFO (its URL holds the request's parameters): our own line per
    # bind says more, once. Its warnings and errors still come through.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    install_masking(root)
