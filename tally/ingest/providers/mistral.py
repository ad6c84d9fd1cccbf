"""Mistral chat payloads: the same JSON shape as OpenAI chat completions."""

from typing import Any

from tally.ingest.normalised import Normalised
from tally.ingest.providers import openai

TYPES = ("chat",)


def normalise(kind: str, request: dict[str, Any], response: Any) -> Normalised:
    return openai.normalise("chat", request, response)
