"""Provider adapters: each turns one format's request and response into a Normalised interaction."""

from typing import Any

from tally.ingest.normalised import Normalised
from tally.ingest.providers import anthropic, bedrock, cohere, mistral, openai, universal

ADAPTERS = {
    "openai": openai,
    "anthropic": anthropic,
    "bedrock": bedrock,
    "cohere": cohere,
    "mistral": mistral,
    "universal": universal,
}
SUPPORTED_TYPES: dict[str, tuple[str, ...]] = {name: module.TYPES for name, module in ADAPTERS.items()}


def normalise(provider: str, kind: str, request: Any, response: Any) -> Normalised:
    body = request if isinstance(request, dict) or provider == "universal" else {}
    return ADAPTERS[provider].normalise(kind, body, response)
