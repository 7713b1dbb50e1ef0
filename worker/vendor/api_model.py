"""The base of every Dypls model: API names as aliases, and no repr that shows a full number.

Field names are snake_case with the API's own names as aliases, so CSV/JSON rows that use
``PoolKey``/``PhoneNoA``/... load directly (snake_case names work too). No ``repr``/``str`` and
no :meth:`ApiModel.masked` view ever shows a full phone number; pydantic's own errors hide their
input (``hide_input_in_errors``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict

from worker.masking import mask_number, mask_obj

# Fields whose value is a phone number: masked whole in every repr.
_NUMBER_FIELDS = frozenset({"phone_no_a", "phone_no_b", "phone_no_x", "secret_no"})


class ApiModel(BaseModel):
    """API names as aliases; reprs, ``str()`` and :meth:`masked` never show a full number."""

    model_config = ConfigDict(populate_by_name=True, hide_input_in_errors=True)

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            if name in _NUMBER_FIELDS and isinstance(value, str) and value:
                yield name, mask_number(value)
            elif isinstance(value, str | dict | list | tuple):
                yield name, mask_obj(value)
            else:
                yield name, value

    def masked(self) -> dict[str, Any]:
        """JSON-friendly dict with API names, phone numbers masked: safe for logs and CLI output."""
        out: dict[str, Any] = mask_obj(self.model_dump(by_alias=True, exclude_none=True, mode="json"))
        return out
