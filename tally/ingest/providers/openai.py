"""OpenAI chat, completion and image payloads (current and legacy SDKs send the API's own JSON)."""

from typing import Any

from tally.ingest.normalised import (
    Message,
    Normalised,
    chat_messages,
    dig,
    has_error,
    json_text,
    optional_str,
    rejected,
    text_of,
)

TYPES = ("chat", "completion", "image")


def normalise(kind: str, request: dict[str, Any], response: Any, *, at: str = "response") -> Normalised:
    """`at` names where `response` sits in the payload, for field names in errors (Bedrock nests it)."""
    if kind == "image":
        return _image(request, response)
    result = Normalised(is_error=has_error(response))
    if response is not None and not isinstance(response, dict):
        result.problem(at, "must be a JSON object")
    result.model = optional_str(dig(response, "model")) or optional_str(request.get("model"))
    result.response_ref = optional_str(dig(response, "id"))
    choices = result.shaped(response, "choices", kind=list, at=at) or []
    first = choices[0] if choices else None
    if first is not None and not isinstance(first, dict):
        result.problem(f"{at}.choices.0", "must be an object")
    result.finish_reason = optional_str(dig(first, "finish_reason"))
    if result.shaped(response, "usage", kind=dict, at=at) is not None:
        result.prompt_tokens = result.count(response, "usage", "prompt_tokens", at=at)
        result.completion_tokens = result.count(response, "usage", "completion_tokens", at=at)
        cached = result.count(response, "usage", "prompt_tokens_details", "cached_tokens", at=at)
        if cached is not None and cached > (result.prompt_tokens or 0):
            raise rejected(f"{at}.usage.prompt_tokens_details.cached_tokens",
                           "cannot be more than usage.prompt_tokens: cached tokens are part of the prompt")
        result.cached_prompt_tokens = cached
    if kind == "chat":
        result.messages = chat_messages(request.get("messages"))
        message = result.shaped(first, "message", kind=dict, at=f"{at}.choices.0")
        result.output_text = _chat_output(message)
    else:
        result.messages = [Message("user", text_of(request.get("prompt")))]
        result.output_text = text_of(dig(first, "text"))
    return result.settle_usage(chat=kind == "chat")


def _chat_output(message: Any) -> str:
    if not isinstance(message, dict):
        return ""
    text = text_of(message.get("content"))
    calls = message.get("tool_calls")
    functions = [dig(call, "function") for call in calls] if isinstance(calls, list) else []
    calls_text = "\n".join(f"{optional_str(c.get('name'))}({json_text(c.get('arguments'))})"
                           for c in functions if isinstance(c, dict))
    return "\n".join(filter(None, (text, calls_text)))


def _image(request: dict[str, Any], response: Any) -> Normalised:
    result = Normalised(is_error=has_error(response))
    data = result.shaped(response, "data", kind=list) or []
    result.model = optional_str(request.get("model")) or "dall-e-2"
    result.messages = [Message("user", text_of(request.get("prompt")))]
    # The client modules replace each image by the name of the file they upload; anything else is not linkable.
    result.image_files = [item for item in data if isinstance(item, str)]
    result.image_count = len(data)
    if result.shaped(response, "usage", kind=dict) is not None:
        result.prompt_tokens = result.count(response, "usage", "input_tokens")
        result.completion_tokens = result.count(response, "usage", "output_tokens")
    return result.settle_usage(chat=False)
