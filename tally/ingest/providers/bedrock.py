"""Amazon Bedrock InvokeModel payloads: the request `body` is a JSON string whose shape depends on the model."""

from typing import Any

import orjson

from tally.ingest.normalised import Message, Normalised, chat_messages, dig, optional_str, text_of
from tally.ingest.providers import anthropic, cohere, openai

TYPES = ("chat", "image")
_REGION_PREFIXES = {"us", "eu", "apac", "global", "us-gov", "ca", "jp", "au"}
BODY = "response.body"  # where the model's own answer sits, for field names in errors


def normalise(kind: str, request: dict[str, Any], response: Any) -> Normalised:
    model_id = optional_str(request.get("modelId"))
    body = _json_body(request.get("body"))
    out = dig(response, "body")
    result = Normalised(
        model=model_id,
        is_error=not isinstance(out, dict) or bool(out.get("error")),
        response_ref=optional_str(dig(response, "requestId")),
    )
    if response is not None and not isinstance(out, dict):
        result.problem(BODY, "must be a JSON object")
    family = model_family(model_id)
    if kind == "image":
        _image(result, body, out)
    elif family == "anthropic":
        _anthropic(result, body, out)
    elif family == "cohere":
        _cohere(result, body, out)
    else:
        _text_model(result, body, out)
    result.response_ref = result.response_ref or optional_str(dig(out, "id"))
    return result.settle_usage(chat="messages" in body or "message" in body)


def model_family(model_id: str | None) -> str:
    """`anthropic.claude-3…` → anthropic; cross-region profiles (`us.meta.llama3…`) resolve the same way."""
    parts = (model_id or "").split(".")
    if len(parts) > 2 and parts[0] in _REGION_PREFIXES:
        parts = parts[1:]
    return parts[0]


def _json_body(body: Any) -> dict[str, Any]:
    if isinstance(body, dict):
        return body
    if isinstance(body, (str, bytes)):
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            return {"prompt": body if isinstance(body, str) else body.decode("utf-8", "replace")}
        return parsed if isinstance(parsed, dict) else {}
    return {}


def _anthropic(result: Normalised, body: dict[str, Any], out: Any) -> None:
    if "messages" in body:
        anthropic.messages_body(result, body, out, at=BODY)
    else:
        result.messages = anthropic.prompt_turns(text_of(body.get("prompt")))
        result.output_text = text_of(dig(out, "completion")).strip()
    result.finish_reason = optional_str(dig(out, "stop_reason"))


def _cohere(result: Normalised, body: dict[str, Any], out: Any) -> None:
    if "message" in body:
        cohere.chat_body(result, body, out, at=BODY)
    else:
        cohere.generate_body(result, body, out, at=BODY)


def _text_model(result: Normalised, body: dict[str, Any], out: Any) -> None:
    """Meta Llama, Amazon Titan and Nova, Mistral, AI21 Jurassic and Jamba: each has its own keys."""
    if isinstance(out, dict) and "choices" in out:  # Mistral Large, AI21 Jamba: OpenAI-like
        chat = openai.normalise("chat", body, out, at=BODY)
        result.messages, result.output_text, result.finish_reason = chat.messages, chat.output_text, chat.finish_reason
        result.prompt_tokens, result.completion_tokens = chat.prompt_tokens, chat.completion_tokens
        result.problems += chat.problems
        return
    result.messages = _input_messages(body)
    out = out if isinstance(out, dict) else {}
    if "generation" in out:  # Meta Llama
        result.output_text = text_of(out["generation"])
        result.finish_reason = optional_str(out.get("stop_reason"))
        result.prompt_tokens = result.count(out, "prompt_token_count", at=BODY)
        result.completion_tokens = result.count(out, "generation_token_count", at=BODY)
    elif "results" in out:  # Amazon Titan Text
        results = result.shaped(out, "results", kind=list, at=BODY) or []
        result.output_text = text_of(dig(results, 0, "outputText"))
        result.finish_reason = optional_str(dig(results, 0, "completionReason"))
        result.prompt_tokens = result.count(out, "inputTextTokenCount", at=BODY)
        counts = [result.count(out, "results", index, "tokenCount", at=BODY) for index in range(len(results))]
        known = [count for count in counts if count is not None]
        result.completion_tokens = sum(known) if known else None
    elif "outputs" in out:  # Mistral 7B/8x7B
        result.output_text = text_of(dig(out, "outputs", 0, "text"))
        result.finish_reason = optional_str(dig(out, "outputs", 0, "stop_reason"))
    elif "completions" in out:  # AI21 Jurassic: token lists stand in for counts
        result.output_text = text_of(dig(out, "completions", 0, "data", "text"))
        result.finish_reason = optional_str(dig(out, "completions", 0, "finishReason", "reason"))
        prompt_tokens, output_tokens = dig(out, "prompt", "tokens"), dig(out, "completions", 0, "data", "tokens")
        if isinstance(prompt_tokens, list) and isinstance(output_tokens, list):
            result.prompt_tokens, result.completion_tokens = len(prompt_tokens), len(output_tokens)
    elif "output" in out:  # Amazon Nova (Converse-style body)
        result.output_text = text_of(dig(out, "output", "message", "content"))
        result.finish_reason = optional_str(out.get("stopReason"))
        result.prompt_tokens = result.count(out, "usage", "inputTokens", at=BODY)
        result.completion_tokens = result.count(out, "usage", "outputTokens", at=BODY)


def _input_messages(body: dict[str, Any]) -> list[Message]:
    if isinstance(body.get("messages"), list):
        system = text_of(body.get("system"))
        return ([Message("system", system)] if system else []) + chat_messages(body["messages"])
    return [Message("user", text_of(body.get("prompt") or body.get("inputText")))]


def _image(result: Normalised, body: dict[str, Any], out: Any) -> None:
    prompts = body.get("text_prompts")
    if isinstance(prompts, list):  # Stability
        text = "\n".join(text_of(p) for p in prompts if isinstance(p, dict) and _weight(p) > 0)
    else:  # Titan Image
        text = text_of(dig(body, "textToImageParams", "text"))
    result.messages = [Message("user", text)]
    images = result.shaped(out, "images", kind=list, at=BODY) or []
    result.image_count = len(images)
    result.image_files = [name for image in images if (name := optional_str(dig(image, "filename")))]
    result.finish_reason = optional_str(dig(images, 0, "finishReason"))


def _weight(prompt: dict) -> float:
    weight = prompt.get("weight")
    return weight if isinstance(weight, (int, float)) and not isinstance(weight, bool) and weight else 1
