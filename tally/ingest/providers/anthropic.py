"""Anthropic Messages (type `chat`) and legacy Text Completions (type `completion`)."""

import re
from typing import Any

from tally.ingest.normalised import Message, Normalised, chat_messages, dig, has_error, json_text, optional_str, text_of

TYPES = ("chat", "completion")
_TURN = re.compile(r"\n\n(Human|Assistant):")
_INPUT_PARTS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


def normalise(kind: str, request: dict[str, Any], response: Any) -> Normalised:
    result = Normalised(is_error=has_error(response))
    if response is not None and not isinstance(response, dict):
        result.problem("response", "must be a JSON object")
    result.model = optional_str(dig(response, "model")) or optional_str(request.get("model"))
    result.response_ref = optional_str(dig(response, "id"))
    result.finish_reason = optional_str(dig(response, "stop_reason"))
    if kind == "chat":
        messages_body(result, request, response)
    else:
        result.messages = prompt_turns(text_of(request.get("prompt")))
        result.output_text = text_of(dig(response, "completion")).strip()
    return result.settle_usage(chat=kind == "chat")


def messages_body(result: Normalised, request: dict[str, Any], response: Any, *, at: str = "response") -> None:
    """Fill messages, output and usage from a Messages API request/response (also used by Bedrock, whose
    response sits at `at`)."""
    system = text_of(request.get("system"))
    result.messages = ([Message("system", system)] if system else []) + chat_messages(request.get("messages"))
    result.output_text = _output(dig(response, "content"))
    if result.shaped(response, "usage", kind=dict, at=at) is None:
        return
    parts = [result.count(response, "usage", key, at=at) for key in _INPUT_PARTS]
    if parts[0] is not None:
        result.prompt_tokens = sum(part or 0 for part in parts)
        result.completion_tokens = result.count(response, "usage", "output_tokens", at=at)
        result.cached_prompt_tokens = parts[2]


def _output(content: Any) -> str:
    if not isinstance(content, list):
        return text_of(content)
    parts = []
    for block in content:
        if isinstance(block, dict) and block.get("type") == "tool_use":
            parts.append(f"{optional_str(block.get('name'))}({json_text(block.get('input'))})")
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
