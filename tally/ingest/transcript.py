"""A session's transcript: the conversation as it unfolded, rebuilt from the stored raw requests and responses.

Chat clients resend the whole history with every call, so each call contributes only the messages its request
adds to what was already said, then its answer. Clients that send one message per call contribute that message.
"""

from typing import Any

import orjson

from tally.ingest.normalised import Message, PayloadRejected
from tally.ingest.providers import normalise


def transcript(interactions: list[Any], images_by_interaction: dict[int, list[dict]]) -> list[dict]:
    """Messages in order, each `{"role", "content", "interaction_id", "at"}`; answers carry the turn's figures."""
    said: list[tuple[str, str]] = []
    messages: list[dict] = []
    for row in interactions:
        for message in _new_messages(said, _sent(row)):
            messages.append({"role": message.role, "content": message.text, "interaction_id": row.id,
                             "at": row.request_at})
            said.append((message.role, message.text))
        messages.append({
            "role": "assistant", "content": row.output_text, "interaction_id": row.id, "at": row.response_at,
            "model": row.model, "prompt_tokens": row.prompt_tokens, "completion_tokens": row.completion_tokens,
            "usage_source": row.usage_source, "latency_ms": row.latency_ms, "is_error": row.is_error,
            "images": images_by_interaction.get(row.id, []), "expired_at": row.expired_at,
        })
        said.append(("assistant", row.output_text))
    return messages


def _sent(row: Any) -> list[Message]:
    """The messages a stored interaction sent; for a row stored before today's checks (a token count they now
    refuse), the one message its columns kept."""
    try:
        return normalise(row.provider, row.type, orjson.loads(row.request_json), orjson.loads(row.response_json)
                         ).messages
    except PayloadRejected:
        return [Message("user", row.input_text)]


def _new_messages(said: list[tuple[str, str]], sent: list[Message]) -> list[Message]:
    pairs = [(m.role, m.text) for m in sent]
    if said and pairs[: len(said)] == said:
        return sent[len(said):]
    seen = set(said)
    return [m for m in sent if not (m.role == "system" and (m.role, m.text) in seen)]
