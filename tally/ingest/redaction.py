"""Redaction at ingest: what a policy hides in an interaction's texts and raw JSON before anything is written.

Modes: `mask` replaces each detected value by its label (`[EMAIL]`); `hash` by the label and a keyed hash
(`[EMAIL:9f86d081884c]`), the same value always the same token, so one can still count distinct values or follow
one across interactions without reading it; `drop-body` stores no text at all (every string of the request and
response is emptied, the metrics are kept); `off` stores what was sent. The values Tally measures or dedupes on
(model, ids, roles, finish reasons) are never touched, so redaction changes no number.
"""

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from tally.ingest.detectors import DETECTORS, NAMES, Detector, Finding, find
from tally.store.secrets import shared_secret
from tally.store.settings import Settings

MODES = ("off", "mask", "hash", "drop-body")
_METADATA_KEYS = frozenset({
    "model", "modelId", "id", "object", "role", "type", "created", "finish_reason", "finishReason", "stop_reason",
    "stopReason", "system_fingerprint", "service_tier",
})
_LABEL = re.compile(r"[A-Z][A-Z0-9_]{0,31}")
_HASH_HEX = 12  # 48 bits: distinct values of one kind collide once in ~16 million pairs


class PolicyError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


@dataclass(frozen=True, slots=True)
class Policy:
    mode: str = "off"
    detectors: tuple[str, ...] = NAMES
    patterns: tuple[tuple[str, str], ...] = ()  # (label, regular expression) of the owner's own detectors

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> "Policy":
        """A policy from its JSON form (`{"mode", "detectors", "patterns": {LABEL: regex}}`), checked; raises
        PolicyError naming the field."""
        mode = data.get("mode", "off")
        if mode not in MODES:
            raise PolicyError("mode", f"must be one of {', '.join(MODES)}")
        detectors = data.get("detectors", list(NAMES))
        if not isinstance(detectors, list) or any(name not in NAMES for name in detectors):
            raise PolicyError("detectors", f"must be a list of: {', '.join(NAMES)}")
        patterns = data.get("patterns") or {}
        if not isinstance(patterns, Mapping):
            raise PolicyError("patterns", "must be an object of LABEL: regular expression")
        for label, pattern in patterns.items():
            check_pattern(label, pattern)
        ordered = tuple(name for name in NAMES if name in detectors)
        return cls(mode, ordered, tuple(sorted(patterns.items())))

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "detectors": list(self.detectors), "patterns": dict(self.patterns)}

    def describe(self) -> str:
        if self.mode in ("off", "drop-body"):
            return self.mode
        found = ", ".join([*self.detectors, *(label for label, _ in self.patterns)]) or "nothing"
        return f"{self.mode}: {found}"


def check_pattern(label: object, pattern: object) -> None:
    if not isinstance(label, str) or _LABEL.fullmatch(label) is None:
        raise PolicyError("patterns", f"label {label!r} must be 1 to 32 capitals, digits or _, starting with a "
                                      "capital (it is what a match becomes: [LABEL])")
    if not isinstance(pattern, str):
        raise PolicyError(f"patterns.{label}", "must be a regular expression")
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        raise PolicyError(f"patterns.{label}", f"is not a valid regular expression: {error}") from None
    if compiled.fullmatch(""):
        raise PolicyError(f"patterns.{label}", "matches the empty string")


class Redactor:
    """A policy compiled, with the key that makes `hash` tokens (shared by every replica)."""

    def __init__(self, policy: Policy, key: bytes) -> None:
        self.policy = policy
        self._key = key
        custom = tuple(Detector(f"pattern:{label}", label, re.compile(pattern)) for label, pattern in policy.patterns)
        self._detectors = custom + tuple(d for d in DETECTORS if d.name in policy.detectors)
        self._drop = policy.mode == "drop-body"

    def text(self, text: str) -> str:
        if self._drop:
            return ""
        if len(text) < 3:  # the shortest value a detector finds is an IP such as ::1
            return text
        pieces, at = [], 0
        for finding in find(text, self._detectors):
            pieces += [text[at:finding.start], self._token(finding)]
            at = finding.end
        return "".join(pieces) + text[at:] if pieces else text

    def json(self, value: Any) -> Any:
        """A copy of a request or response with every string redacted but the metadata Tally reads."""
        if isinstance(value, str):
            return self._leaf(value)
        if isinstance(value, dict):
            return {key: item if key in _METADATA_KEYS and not isinstance(item, (dict, list)) else self.json(item)
                    for key, item in value.items()}
        if isinstance(value, list):
            return [self.json(item) for item in value]
        return value

    def _leaf(self, value: str) -> str:
        if not self._drop and value.startswith("data:") and ";base64," in value[:100]:
            return value  # an inlined image: bytes, not words
        return self.text(value)

    def _token(self, finding: Finding) -> str:
        if self.policy.mode == "mask":
            return f"[{finding.label}]"
        digest = hmac.new(self._key, f"{finding.label}:{finding.value}".encode("utf-8", "surrogatepass"),
                          hashlib.sha256).hexdigest()
        return f"[{finding.label}:{digest[:_HASH_HEX]}]"


class Redactions:
    """The redactor for each policy in use (the server's, or an app's own), compiled once."""

    def __init__(self, default: Policy, key: bytes) -> None:
        self.default = default
        self._key = key
        self._compiled: dict[Policy, Redactor | None] = {}

    def for_app(self, policy: Policy | None) -> Redactor | None:
        """None when nothing is to be redacted."""
        chosen = policy or self.default
        if chosen not in self._compiled:
            self._compiled[chosen] = None if chosen.mode == "off" else Redactor(chosen, self._key)
        return self._compiled[chosen]


def server_redactions(settings: Settings, engine: Engine) -> Redactions:
    """The server's policy (TALLY_REDACTION_*, checked: a bad one stops the start) and the store's hash key."""
    try:
        default = Policy.parse(settings.redaction_policy())
    except PolicyError as error:
        raise ValueError(f"TALLY_REDACTION_{error.field.split('.')[0].upper()}: {error.message}") from None
    return Redactions(default, shared_secret(engine, name="redaction").encode())
