"""The Reconify wire format: what a client posts to /track and /upload, and how it is checked."""

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

MIN_MILLIS = 10**11  # 1973-03-03 in milliseconds; anything smaller is almost surely seconds


def _blank_to_none(value: Any) -> Any:
    return None if value == "" or value == {} else value


Blankable = BeforeValidator(_blank_to_none)


class ReconifyHeader(BaseModel):
    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True)

    format: str
    type: str
    appKey: str = Field(min_length=1, max_length=200)
    apiKey: str = Field(min_length=1, max_length=200)
    version: str | None = None


class Timestamps(BaseModel):
    model_config = ConfigDict(extra="allow")

    request: Annotated[int | None, Blankable] = None
    response: Annotated[int | None, Blankable] = None

    @field_validator("request", "response")
    @classmethod
    def _milliseconds(cls, value: int | None) -> int | None:
        if value is not None and not MIN_MILLIS <= value < 10**14:
            raise ValueError("must be milliseconds since the epoch (e.g. 1689703471457)")
        return value


class UserFields(BaseModel):
    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True, str_strip_whitespace=True)

    userId: Annotated[str | None, Blankable] = Field(None, max_length=255)
    email: Annotated[str | None, Blankable] = Field(None, max_length=320)
    firstName: Annotated[str | None, Blankable] = Field(None, max_length=200)
    lastName: Annotated[str | None, Blankable] = Field(None, max_length=200)
    phone: Annotated[str | None, Blankable] = Field(None, max_length=64)
    gender: Annotated[str | None, Blankable] = Field(None, max_length=64)
    isAuthenticated: Annotated[bool | None, Blankable] = None


class TrackPayload(BaseModel):
    """One interaction. `session: ""`, `sessionTimeout: ""` and `user: {}` mean unset, as the clients send them."""

    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True, populate_by_name=True)

    reconify: ReconifyHeader
    timestamps: Annotated[Timestamps | None, Blankable] = None
    session: Annotated[str | None, Blankable] = Field(None, max_length=255)
    sessionTimeout: Annotated[float | None, Blankable] = Field(None, gt=0, le=60 * 24 * 366)
    sessionTimeOut: Annotated[float | None, Blankable] = Field(None, gt=0, le=60 * 24 * 366)
    user: Annotated[UserFields | None, Blankable] = None
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
