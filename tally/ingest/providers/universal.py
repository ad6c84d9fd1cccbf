"""The universal module: free-form request and response; the response may be a plain string."""

from typing import Any

from tally.ingest.normalised import Message, Normalised, chat_messages, dig, optional_str, text_of
from tally.ingest.providers import openai

TYPES = ("chat", "completion")
_INPUT_KEYS = ("prompt", "input", "query", "question", "message", "text")
_OUTPUT_KEYS = ("output", "text", "content", "completion", "answer", "response", "message")


def normalise(kind: str, request: Any, response: Any) -> Normalised:
    body = request if isinstance(request, dict) else {}
    if isinstance(response, dict) and "choices" in response:
        return openai.normalise("chat" if "messages" in body else "completion", body, response)
    messages = body.get("messages") if isinstance(request, dict) else request  # a bare list of messages too
    result = Normalised(
        model=optional_str(body.get("model")) or optional_str(dig(response, "model")),
        messages=chat_messages(messages) or [Message("user", _input(request))],
        output_text=_output(response),
        is_error=isinstance(response, dict) and bool(response.get("error")),
        response_ref=optional_str(dig(response, "id")),
    )
    if result.shaped(response, "usage", kind=dict) is not None:
        for names, attribute in ((("prompt_tokens", "input_tokens"), "prompt_tokens"),
                                 (("completion_tokens", "output_tokens"), "completion_tokens")):
            name = next((n for n in names if dig(response, "usage", n) is not None), names[0])
            setattr(result, attribute, result.count(response, "usage", name))
    return result.settle_usage(chat=kind == "chat")


def _input(request: Any) -> str:
    if isinstance(request, dict):
        for key in _INPUT_KEYS:
            if request.get(key) is not None:
                return text_of(request[key])
        return ""
    return text_of(request)


def _output(response: Any) -> str:
    if isinstance(response, dict):
        for key in _OUTPUT_KEYS:
            if response.get(key) is not None:
                return text_of(response[key])
        return ""
    return text_of(response)
