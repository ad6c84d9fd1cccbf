"""Cohere chat and generate payloads (the v4 SDK objects the Python module sends, and the v5 JSON)."""

from typing import Any

from tally.ingest.normalised import Message, Normalised, as_int, dig, has_error, optional_str, text_of

TYPES = ("chat", "completion")


def normalise(kind: str, request: dict[str, Any], response: Any) -> Normalised:
    result = Normalised(model=optional_str(request.get("model")), is_error=has_error(response))
    if kind == "chat":
        chat_body(result, request, response)
    else:
        generate_body(result, request, response)
    return result.settle_usage(chat=kind == "chat")


def chat_body(result: Normalised, request: dict[str, Any], response: Any) -> None:
    """Fill a Normalised from a Cohere chat request/response (also used by Bedrock's Command R)."""
    preamble = text_of(request.get("preamble"))
    history = request.get("chat_history") if isinstance(request.get("chat_history"), list) else []
    result.messages = [Message("system", preamble)] if preamble else []
    result.messages += [_history_message(turn) for turn in history if isinstance(turn, dict)]
    result.messages.append(Message("user", text_of(request.get("message"))))
    result.output_text = text_of(dig(response, "text"))
    result.finish_reason = optional_str(dig(response, "finish_reason"))
    result.response_ref = optional_str(dig(response, "generation_id")) or optional_str(dig(response, "response_id"))
    tokens = dig(response, "meta", "tokens") or dig(response, "meta", "billed_units")
    if isinstance(tokens, dict) and as_int(tokens.get("input_tokens")) is not None:
        result.prompt_tokens = as_int(tokens.get("input_tokens"))
        result.completion_tokens = as_int(tokens.get("output_tokens"))
    elif isinstance(dig(response, "token_count"), dict):
        result.prompt_tokens = as_int(dig(response, "token_count", "prompt_tokens"))
        result.completion_tokens = as_int(dig(response, "token_count", "response_tokens"))


def generate_body(result: Normalised, request: dict[str, Any], response: Any) -> None:
    result.messages = [Message("user", text_of(request.get("prompt")))]
    result.output_text = text_of(dig(response, "generations", 0, "text"))
    result.finish_reason = optional_str(dig(response, "generations", 0, "finish_reason"))
    result.response_ref = optional_str(dig(response, "generations", 0, "id")) or optional_str(dig(response, "id"))
    billed = dig(response, "meta", "billed_units")
    if isinstance(billed, dict):
        result.prompt_tokens = as_int(billed.get("input_tokens"))
        result.completion_tokens = as_int(billed.get("output_tokens"))


def _history_message(turn: dict[str, Any]) -> Message:
    role = str(turn.get("role") or turn.get("user_name") or "user").lower()
    role = {"chatbot": "assistant", "bot": "assistant"}.get(role, role)
    return Message(role, text_of(turn.get("message") or turn.get("text")))
