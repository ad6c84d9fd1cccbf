"""The Reconify wire format: what a client posts to /track and /upload, and how it is checked."""

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tally.store.limits import MAX_JSON_DEPTH

MIN_MILLIS = 10**11  # 1973-03-03 in milliseconds; anything smaller is almost surely seconds
FILENAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"  # an uploaded image's name: no path, no hidden file


def _blanks_to_none(data: Any, keys: frozenset[str] | None = None) -> Any:
    """The clients send "" and {} for unset values; read them as absent (one pass per object, not per field)."""
    if not isinstance(data, dict):
        return data
    blank = [key for key, value in data.items() if (value == "" or value == {}) and (keys is None or key in keys)]
    return {**data, **dict.fromkeys(blank)} if blank else data


def _no_nul(value: str | None) -> str | None:
    # PostgreSQL cannot store NUL in text, SQLite can: refusing it here gives both stores the same answer.
    if value is not None and "\x00" in value:
        raise ValueError("must not contain NUL (\\u0000) characters")
    return value


StoredText = Annotated[str, AfterValidator(_no_nul)]


def nesting_exceeds(value: Any, limit: int) -> bool:
    """Whether JSON `value` nests containers more than `limit` deep; iterative, so any depth is safe to check."""
    stack = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
    return False


def too_deep(payload: "TrackPayload") -> list[dict[str, str]]:
    """Field errors for a `request` or `response` nested more than MAX_JSON_DEPTH deep."""
    return [{"field": name, "message": f"must not nest objects and arrays more than {MAX_JSON_DEPTH} levels deep"}
            for name in ("request", "response") if nesting_exceeds(getattr(payload, name), MAX_JSON_DEPTH)]


_OPTIONAL_TOP_LEVEL = frozenset({"timestamps", "session", "sessionTimeout", "sessionTimeOut", "user"})


class ReconifyHeader(BaseModel):
    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True)

    format: str
    type: str
    appKey: str = Field(min_length=1, max_length=200)
    apiKey: str = Field(min_length=1, max_length=200)
    version: StoredText | None = None


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

    userId: StoredText | None = Field(None, max_length=255)
    email: StoredText | None = Field(None, max_length=320)
    firstName: StoredText | None = Field(None, max_length=200)
    lastName: StoredText | None = Field(None, max_length=200)
    phone: StoredText | None = Field(None, max_length=64)
    gender: StoredText | None = Field(None, max_length=64)
    isAuthenticated: bool | None = None

    @field_validator("email")
    @classmethod
    def _email_key_fits(cls, value: str | None) -> str | None:
        # Users are found by the lower-cased email, which can be longer than the email (`İ` lowers to two
        # characters); both must fit the column.
        if value is not None and len(value.lower()) > 320:
            raise ValueError("must have at most 320 characters once lower-cased")
        return value


class TrackPayload(BaseModel):
    """One interaction. `session: ""`, `sessionTimeout: ""` and `user: {}` mean unset, as the clients send them."""

    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True, populate_by_name=True)
    _blanks = model_validator(mode="before")(lambda data: _blanks_to_none(data, _OPTIONAL_TOP_LEVEL))

    reconify: ReconifyHeader
    timestamps: Timestamps | None = None
    session: StoredText | None = Field(None, max_length=255)
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

    filename: str = Field(min_length=1, max_length=255, pattern=FILENAME_PATTERN)
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
