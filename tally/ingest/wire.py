"""The Reconify wire format: what a client posts to /track and /upload, and how it is checked."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

MIN_MILLIS = 10**11  # 1973-03-03 in milliseconds; anything smaller is almost surely seconds


def _blanks_to_none(data: Any, keys: frozenset[str] | None = None) -> Any:
    """The clients send "" and {} for unset values; read them as absent (one pass per object, not per field)."""
    if not isinstance(data, dict):
        return data
    blank = [key for key, value in data.items() if (value == "" or value == {}) and (keys is None or key in keys)]
    return {**data, **dict.fromkeys(blank)} if blank else data


_OPTIONAL_TOP_LEVEL = frozenset({"timestamps", "session", "sessionTimeout", "sessionTimeOut", "user"})


class ReconifyHeader(BaseModel):
    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True)

    format: str
    type: str
    appKey: str = Field(min_length=1, max_length=200)
    apiKey: str = Field(min_length=1, max_length=200)
    version: str | None = None


class Timestamps(BaseModel):
    model_config = ConfigDict(extra="allow")
    _blanks = model_validator(mode="before")(_blanks_to_none)

    request: int | None = None
    response: int | None = None

    @field_validator("request", "response")
    @classmethod
    def _milliseconds(cls, value: int | None) -> int | None:
        if value is not None and not MIN_MILLIS <= value < 10**14:
            raise ValueError("must be milliseconds since the epoch (e.g. 1689703471457)")
        return value


class UserFields(BaseModel):
    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True, str_strip_whitespace=True)
    _blanks = model_validator(mode="before")(_blanks_to_none)

    userId: str | None = Field(None, max_length=255)
    email: str | None = Field(None, max_length=320)
    firstName: str | None = Field(None, max_length=200)
    lastName: str | None = Field(None, max_length=200)
    phone: str | None = Field(None, max_length=64)
    gender: str | None = Field(None, max_length=64)
    isAuthenticated: bool | None = None


class TrackPayload(BaseModel):
    """One interaction. `session: ""`, `sessionTimeout: ""` and `user: {}` mean unset, as the clients send them."""

    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True, populate_by_name=True)
    _blanks = model_validator(mode="before")(lambda data: _blanks_to_none(data, _OPTIONAL_TOP_LEVEL))

    reconify: ReconifyHeader
    timestamps: Timestamps | None = None
    session: str | None = Field(None, max_length=255)
    sessionTimeout: float | None = Field(None, gt=0, le=60 * 24 * 366)
    sessionTimeOut: float | None = Field(None, gt=0, le=60 * 24 * 366)
    user: UserFields | None = None
    # `request` and `response` pass through as parsed, unrebuilt: they are only read, and copying them
    # would be the most expensive part of validating a payload.
    request: Any
    response: Any  # required; may be null (the Node module sends null when it had no data) or a plain string

    @field_validator("request")
    @classmethod
    def _request_shape(cls, value: Any) -> Any:
        if not isinstance(value, (dict, list, str)):
            raise ValueError("must be a JSON object (or, for the universal format, an array or a string)")
        return value

    @property
    def session_timeout_minutes(self) -> float | None:
        return self.sessionTimeout if self.sessionTimeout is not None else self.sessionTimeOut


class UploadBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    filename: str = Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    type: str | None = None
    data: dict[str, Any] | str
    format: str = "b64_json"


class UploadPayload(BaseModel):
    model_config = ConfigDict(extra="allow")

    reconify: ReconifyHeader
    upload: UploadBody


def field_errors(error: ValidationError) -> list[dict[str, str]]:
    """Pydantic's errors as `{"field": "reconify.appKey", "message": …}`, the shape every 422 uses."""
    return [
        {"field": ".".join(str(part) for part in item["loc"]) or "(body)", "message": item["msg"]}
        for item in error.errors(include_url=False, include_context=False, include_input=False)
    ]
