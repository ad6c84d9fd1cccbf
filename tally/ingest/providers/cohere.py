"""Cohere chat and generate payloads (the v4 SDK objects the Python module sends, and the v5 JSON)."""

from typing import Any

from tally.ingest.normalised import Message, Normalised, dig, has_error, optional_str, text_of

TYPES = ("chat", "completion")


def normalise(kind: str, request: dict[str, Any], response: Any) -> Normalised:
    result = Normalised(model=optional_str(request.get("model")), is_error=has_error(response))
    if response is not None and not isinstance(response, dict):
        result.problem("response", "must be a JSON object")
    if kind == "chat":
        chat_body(result, request, response)
    else:
        generate_body(result, request, response)
    return result.settle_usage(chat=kind == "chat")


def chat_body(result: Normalised, request: dict[str, Any], response: Any, *, at: str = "response") -> None:
    """Fill a Normalised from a Cohere chat request/response (also used by Bedrock's Command R, whose response
    sits at `at`)."""
    preamble = text_of(request.get("preamble"))
    history = request.get("chat_history")
    result.messages = [Message("system", preamble)] if preamble else []
    if isinstance(history, list):
        result.messages += [_history_message(turn) for turn in history if isinstance(turn, dict)]
    result.messages.append(Message("user", text_of(request.get("message"))))
    result.output_text = text_of(dig(response, "text"))
    result.finish_reason = optional_str(dig(response, "finish_reason"))
    result.response_ref = optional_str(dig(response, "generation_id")) or optional_str(dig(response, "response_id"))
    for path in (("meta", "tokens"), ("meta", "billed_units")):
        counts = result.shaped(response, *path, kind=dict, at=at)
        if counts is not None and counts.get("input_tokens") is not None:
            result.prompt_tokens = result.count(response, *path, "input_tokens", at=at)
            result.completion_tokens = result.count(response, *path, "output_tokens", at=at)
            return
    if result.shaped(response, "token_count", kind=dict, at=at) is not None:
        result.prompt_tokens = result.count(response, "token_count", "prompt_tokens", at=at)
        result.completion_tokens = result.count(response, "token_count", "response_tokens", at=at)


def generate_body(result: Normalised, request: dict[str, Any], response: Any, *, at: str = "response") -> None:
    result.messages = [Message("user", text_of(request.get("prompt")))]
    generations = result.shaped(response, "generations", kind=list, at=at)
    result.output_text = text_of(dig(generations, 0, "text"))
    result.finish_reason = optional_str(dig(generations, 0, "finish_reason"))
    result.response_ref = optional_str(dig(generations, 0, "id")) or optional_str(dig(response, "id"))
    if result.shaped(response, "meta", "billed_units", kind=dict, at=at) is not None:
        result.prompt_tokens = result.count(response, "meta", "billed_units", "input_tokens", at=at)
        result.completion_tokens = result.count(response, "meta", "billed_units", "output_tokens", at=at)


def _history_message(turn: dict[str, Any]) -> Message:
    role = (optional_str(turn.get("role")) or optional_str(turn.get("user_name")) or "user").lower()
    role = {"chatbot": "assistant", "bot": "assistant"}.get(role, role)
    return Message(role, text_of(turn.get("message") or turn.get("text")))
