"""The provider-neutral shape of one interaction, and the offline token estimate.

Token estimate (used only when a provider reports no usage, and always marked `estimated`): one token per
four ASCII characters, one per other character (CJK, emoji and accented text tokenise densely), rounded up,
plus four tokens of framing per chat message, as OpenAI's cookbook counts for chat formats. It needs no
vocabulary files, so it works offline, and it lands within about 15% of tiktoken on English prose.
"""

import math
from dataclasses import dataclass, field
from typing import Any

import orjson

from tally.store.limits import MAX_TOKENS

USAGE_REPORTED = "reported"
USAGE_ESTIMATED = "estimated"
USAGE_ABSENT = "absent"
CHAT_MESSAGE_OVERHEAD = 4
_KINDS: dict[type, str] = {dict: "an object", list: "an array", str: "a string"}


class PayloadRejected(ValueError):
    """A payload that passed the schema but cannot be stored; carries field errors for the 422."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__(errors)
        self.errors = errors


def rejected(field_name: str, message: str) -> PayloadRejected:
    return PayloadRejected([{"field": field_name, "message": message}])


@dataclass(slots=True)
class Message:
    role: str
    text: str


@dataclass(slots=True)
class Normalised:
    model: str | None = None
    messages: list[Message] = field(default_factory=list)  # what was sent, in order
    output_text: str = ""
    prompt_tokens: int | None = None
    cached_prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    image_files: list[str] = field(default_factory=list)
    image_count: int = 0
    is_error: bool = False
    response_ref: str | None = None
    usage_source: str = USAGE_REPORTED
    # Parts of the response that do not have the shape its format documents: the interaction is stored, flagged
    # as malformed with these `{"field", "message"}` notes, rather than refused (a provider's new shape must not
    # cost an app its telemetry).
    problems: list[dict[str, str]] = field(default_factory=list)

    def problem(self, where: str, message: str) -> None:
        self.problems.append({"field": where, "message": message})

    def shaped(self, data: Any, *path: str | int, kind: type, at: str = "response") -> Any:
        """`data[path…]` when it is absent or of `kind`; otherwise notes the problem and answers None."""
        value = dig(data, *path)
        if value is None or isinstance(value, kind):
            return value
        expected = _KINDS.get(kind, kind.__name__)
        self.problem(_field(at, path), f"must be {expected}")
        return None

    def count(self, data: Any, *path: str | int, at: str = "response") -> int | None:
        """The token count at `data[path…]`. Absent: None. Not a number: noted as a problem, None. A number that
        is not a whole count within [0, MAX_TOKENS]: the payload is refused, naming the field."""
        value = dig(data, *path)
        if value is None or (type(value) is int and 0 <= value <= MAX_TOKENS):  # the usual case, first
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.problem(_field(at, path), "must be a number of tokens")
            return None
        if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
            raise rejected(_field(at, path), "must be a whole number of tokens")
        if not 0 <= value <= MAX_TOKENS:
            raise rejected(_field(at, path), f"must be between 0 and {MAX_TOKENS:,} tokens")
        return int(value)

    @property
    def input_text(self) -> str:
        """What the user asked this turn: the last user message, else the last message of any role."""
        for message in reversed(self.messages):
            if message.role == "user":
                return message.text
        return self.messages[-1].text if self.messages else ""

    @property
    def total_tokens(self) -> int | None:
        if self.prompt_tokens is None and self.completion_tokens is None:
            return None
        return (self.prompt_tokens or 0) + (self.completion_tokens or 0)

    def settle_usage(self, *, chat: bool) -> "Normalised":
        """Mark reported usage as such, or estimate what is missing from the text; images carry no tokens."""
        if self.prompt_tokens is not None or self.completion_tokens is not None:
            for name in ("prompt_tokens", "completion_tokens"):
                if (getattr(self, name) or 0) > MAX_TOKENS:  # a sum of parts, each within bounds
                    raise rejected("response.usage", f"{name} add up to more than {MAX_TOKENS:,} tokens")
            self.usage_source = USAGE_REPORTED
        elif self.image_count and not self.output_text:
            self.usage_source = USAGE_ABSENT
        elif self.messages or self.output_text:
            overhead = CHAT_MESSAGE_OVERHEAD if chat else 0
            self.prompt_tokens = sum(estimate_tokens(m.text) + overhead for m in self.messages)
            self.completion_tokens = estimate_tokens(self.output_text)
            self.usage_source = USAGE_ESTIMATED
        else:
            self.usage_source = USAGE_ABSENT
        return self


def estimate_tokens(text: str) -> int:
    if not text:
        return 0
    ascii_chars = len(text.encode("ascii", "ignore"))
    return -(-ascii_chars // 4) + (len(text) - ascii_chars)


def text_of(content: Any) -> str:
    """Plain text of a message content: a string, a list of parts (`{"type": "text", "text": …}`), or a part."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, (bool, int, float)):
        return orjson.dumps(content).decode()  # `true`, not Python's `True`
    if isinstance(content, list):
        return "\n".join(filter(None, (text_of(part) for part in content)))
    if isinstance(content, dict):
        for key in ("text", "content", "outputText", "generation", "completion"):
            if isinstance(content.get(key), (str, list)):
                return text_of(content[key])
        return ""
    return str(content)


def json_text(value: Any) -> str:
    """A string as it is, anything else as its JSON (tool arguments arrive as either)."""
    if value is None:
        return ""
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _field(at: str, path: tuple[str | int, ...]) -> str:
    return ".".join([at, *(str(step) for step in path)])


def dig(data: Any, *path: str | int) -> Any:
    """`data[path[0]][path[1]]…`, or None as soon as a step is missing or of the wrong kind."""
    for step in path:
        if isinstance(step, int):
            if not isinstance(data, list) or not -len(data) <= step < len(data):
                return None
        elif not isinstance(data, dict):
            return None
        data = data[step] if isinstance(step, int) else data.get(step)
    return data


def chat_messages(messages: Any) -> list[Message]:
    if not isinstance(messages, list):
        return []
    return [
        Message(optional_str(m.get("role")) or "user", text_of(m.get("content")))
        for m in messages
        if isinstance(m, dict)
    ]


def has_error(response: Any) -> bool:
    if response is None:
        return True
    return isinstance(response, dict) and (bool(response.get("error")) or response.get("type") == "error")


def optional_str(value: Any) -> str | None:
    """A string field as text: numbers as JSON writes them; absent, empty, booleans and containers are None."""
    if value is None or value == "" or isinstance(value, (bool, dict, list)):
        return None
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode() if isinstance(value, (int, float)) else None
