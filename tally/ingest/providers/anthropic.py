"""Anthropic Messages (type `chat`) and legacy Text Completions (type `completion`)."""

import re
from typing import Any

from tally.ingest.normalised import Message, Normalised, as_int, chat_messages, dig, has_error, optional_str, text_of

TYPES = ("chat", "completion")
_TURN = re.compile(r"\n\n(Human|Assistant):")


def normalise(kind: str, request: dict[str, Any], response: Any) -> Normalised:
    result = Normalised(
        model=optional_str(dig(response, "model")) or optional_str(request.get("model")),
        is_error=has_error(response),
        response_ref=optional_str(dig(response, "id")),
        finish_reason=optional_str(dig(response, "stop_reason")),
    )
    if kind == "chat":
        messages_body(result, request, response)
    else:
        result.messages = prompt_turns(text_of(request.get("prompt")))
        result.output_text = text_of(dig(response, "completion")).strip()
    return result.settle_usage(chat=kind == "chat")


def messages_body(result: Normalised, request: dict[str, Any], response: Any) -> None:
    """Fill messages, output and usage from a Messages API request/response (also used by Bedrock)."""
    system = text_of(request.get("system"))
    result.messages = ([Message("system", system)] if system else []) + chat_messages(request.get("messages"))
    result.output_text = _output(dig(response, "content"))
    usage = dig(response, "usage") or {}
    if isinstance(usage, dict) and as_int(usage.get("input_tokens")) is not None:
        result.prompt_tokens = sum(
            as_int(usage.get(key)) or 0
            for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
        )
        result.completion_tokens = as_int(usage.get("output_tokens"))
        result.cached_prompt_tokens = as_int(usage.get("cache_read_input_tokens"))


def _output(content: Any) -> str:
    if not isinstance(content, list):
        return text_of(content)
    parts = []
    for block in content:
        if isinstance(block, dict) and block.get("type") == "tool_use":
            parts.append(f"{block.get('name')}({block.get('input')})")
        else:
            parts.append(text_of(block))
    return "\n".join(filter(None, parts))


def prompt_turns(prompt: str) -> list[Message]:
    """Split a `\\n\\nHuman: … \\n\\nAssistant:` prompt into turns; the trailing empty Assistant cue is dropped."""
    pieces = _TURN.split(prompt)
    messages = [Message("system", pieces[0].strip())] if pieces[0].strip() else []
    for speaker, text in zip(pieces[1::2], pieces[2::2]):
        if text.strip():
            messages.append(Message("user" if speaker == "Human" else "assistant", text.strip()))
    return messages or [Message("user", prompt)]
