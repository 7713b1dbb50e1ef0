"""Dypls answers as pydantic models: the common shape, BindAxb's SecretBindDTO, a binding's details.

Unknown keys are kept (``extra="allow"``), never refused: the vendor may add fields.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, field_validator

from worker.vendor.api_model import ApiModel


def _id_text(value: Any) -> Any:
    """Vendor ids arrive as strings, but tolerate JSON numbers."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


class ApiResponse(ApiModel):
    """A vendor answer: unknown keys are kept (``extra="allow"``), never refused."""

    model_config = ConfigDict(populate_by_name=True, hide_input_in_errors=True, extra="allow")


class SecretBindDTO(ApiResponse):
    """What a successful BindAxb returns: the X number, the subscription id, an extension or ``""``."""

    model_config = ConfigDict(populate_by_name=True, hide_input_in_errors=True, extra="allow", frozen=True)

    secret_no: str = Field(alias="SecretNo")
    subs_id: str = Field(alias="SubsId")
    extension: str = Field(default="", alias="Extension")

    @field_validator("secret_no", "subs_id", mode="before")
    @classmethod
    def _v_ids(cls, v: Any) -> Any:
        return _id_text(v)

    @field_validator("extension", mode="before")
    @classmethod
    def _v_extension(cls, v: Any) -> Any:
        return "" if v is None else _id_text(v)


class VendorResponse(ApiResponse):
    """The common answer shape (UnbindSubscription, UpdateSubscription, errors)."""

    request_id: str = Field(default="", alias="RequestId")
    code: str = Field(default="", alias="Code")
    message: str | None = Field(default="", alias="Message")

    @property
    def ok(self) -> bool:
        return self.code == "OK"


class BindAxbResponse(VendorResponse):
    secret_bind_dto: SecretBindDTO | None = Field(default=None, alias="SecretBindDTO")


class SecretBindDetailDTO(ApiResponse):
    """A binding as QuerySubscriptionDetail describes it (``Status`` 1 active, 0 expired)."""

    status: int | None = Field(default=None, alias="Status")
    expire_date: str | None = Field(default=None, alias="ExpireDate")
    phone_no_a: str | None = Field(default=None, alias="PhoneNoA")
    phone_no_b: str | None = Field(default=None, alias="PhoneNoB")
    phone_no_x: str | None = Field(default=None, alias="PhoneNoX")
    gmt_create: str | None = Field(default=None, alias="GmtCreate")
    need_record: bool | None = Field(default=None, alias="NeedRecord")
    subs_id: str | None = Field(default=None, alias="SubsId")
    extension: str | None = Field(default=None, alias="Extension")
    call_restrict: str | None = Field(default=None, alias="CallRestrict")
    asr_status: bool | None = Field(default=None, alias="ASRStatus")
    asr_model_id: str | None = Field(default=None, alias="ASRModelId")
    group_id: str | None = Field(default=None, alias="GroupId")

    @field_validator(
        "phone_no_a", "phone_no_b", "phone_no_x", "subs_id", "extension", "group_id", mode="before"
    )
    @classmethod
    def _v_ids(cls, v: Any) -> Any:
        return _id_text(v)

    @property
    def active(self) -> bool:
        return self.status == 1


class QuerySubscriptionDetailResponse(VendorResponse):
    secret_bind_detail_dto: SecretBindDetailDTO | None = Field(default=None, alias="SecretBindDetailDTO")
