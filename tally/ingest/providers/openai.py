"""OpenAI chat, completion and image payloads (current and legacy SDKs send the API's own JSON)."""

from typing import Any

from tally.ingest.normalised import Message, Normalised, as_int, chat_messages, dig, has_error, optional_str, text_of

TYPES = ("chat", "completion", "image")


def normalise(kind: str, request: dict[str, Any], response: Any) -> Normalised:
    if kind == "image":
        return _image(request, response)
    result = Normalised(
        model=optional_str(dig(response, "model")) or optional_str(request.get("model")),
        is_error=has_error(response),
        response_ref=optional_str(dig(response, "id")),
        finish_reason=optional_str(dig(response, "choices", 0, "finish_reason")),
        prompt_tokens=as_int(dig(response, "usage", "prompt_tokens")),
        completion_tokens=as_int(dig(response, "usage", "completion_tokens")),
        cached_prompt_tokens=as_int(dig(response, "usage", "prompt_tokens_details", "cached_tokens")),
    )
    if kind == "chat":
        result.messages = chat_messages(request.get("messages"))
        result.output_text = _chat_output(dig(response, "choices", 0, "message"))
    else:
        result.messages = [Message("user", text_of(request.get("prompt")))]
        result.output_text = text_of(dig(response, "choices", 0, "text"))
    return result.settle_usage(chat=kind == "chat")


def _chat_output(message: Any) -> str:
    if not isinstance(message, dict):
        return ""
    text = text_of(message.get("content"))
    calls = [dig(call, "function") for call in message.get("tool_calls") or []]
    calls_text = "\n".join(f"{c.get('name')}({c.get('arguments', '')})" for c in calls if isinstance(c, dict))
    return "\n".join(filter(None, (text, calls_text)))


def _image(request: dict[str, Any], response: Any) -> Normalised:
    data = dig(response, "data")
    data = data if isinstance(data, list) else []
    result = Normalised(
        model=optional_str(request.get("model")) or "dall-e-2",
        messages=[Message("user", text_of(request.get("prompt")))],
        image_files=[item for item in data if isinstance(item, str)],
        image_count=len(data),
        is_error=has_error(response),
        prompt_tokens=as_int(dig(response, "usage", "input_tokens")),
        completion_tokens=as_int(dig(response, "usage", "output_tokens")),
    )
    return result.settle_usage(chat=False)
