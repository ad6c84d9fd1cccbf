"""Stand-ins for the providers behind the Reconify client modules: a fake OpenAI/Anthropic HTTP API, fake SDK clients.

Each answer carries a fresh id, because Tally stores a retried provider response (same id) only once.
"""

import base64
import io
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

from botocore.response import StreamingBody


def fake_png(index: int) -> bytes:
    """Distinct bytes per image, so a test can tell which upload ended up under which file."""
    return b"\x89PNG\r\n\x1a\n" + f"fake image {index}".encode()


def b64_png(index: int) -> str:
    return base64.b64encode(fake_png(index)).decode()


def _last_user_text(messages: list[dict]) -> str:
    return next(m["content"] for m in reversed(messages) if m["role"] == "user")


# --- OpenAI API JSON (the current SDK parses it; the legacy SDK returned it as an OpenAIObject dict) ---

def openai_chat_answer(request: dict) -> dict:
    """Replies `Echo: <last user message>`, with usage 19 (4 of them cached) + 9."""
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
        "model": f"{request['model']}-2024-07-18",
        "choices": [{"index": 0, "logprobs": None, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": f"Echo: {_last_user_text(request['messages'])}"}}],
        "usage": {"prompt_tokens": 19, "completion_tokens": 9, "total_tokens": 28,
                  "prompt_tokens_details": {"cached_tokens": 4, "audio_tokens": 0}},
    }


def openai_completion_answer(request: dict) -> dict:
    """Completes any prompt with ` blue.`, stopping on length, with usage 6 + 2."""
    return {
        "id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
        "model": request["model"],
        "choices": [{"text": " blue.", "index": 0, "logprobs": None, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 6, "completion_tokens": 2, "total_tokens": 8},
    }


def openai_image_answer(request: dict) -> dict:
    """`n` images, as links or as base64 data (`fake_png(0)`, `fake_png(1)`, …) per `response_format`."""
    as_data = request.get("response_format") == "b64_json"
    return {
        "created": int(time.time()),
        "data": [{"b64_json": b64_png(i)} if as_data else {"url": f"https://images.example/fox-{i}.png"}
                 for i in range(request.get("n", 1))],
    }


def anthropic_message_answer(request: dict) -> dict:
    """Replies `Paris`; usage 25 input + 5 read from the prompt cache, 3 output."""
    return {
        "id": f"msg_{uuid.uuid4().hex}", "type": "message", "role": "assistant", "model": "claude-haiku-4-5-20251001",
        "content": [{"type": "text", "text": "Paris"}], "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 25, "output_tokens": 3, "cache_read_input_tokens": 5},
    }


_ROUTES = {
    "/v1/chat/completions": openai_chat_answer,
    "/v1/completions": openai_completion_answer,
    "/v1/images/generations": openai_image_answer,
    "/v1/messages": anthropic_message_answer,
}


class _ProviderHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (the http.server naming)
        answer = _ROUTES.get(self.path)
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        body = json.dumps(answer(request) if answer else {"error": {"message": f"no route {self.path}"}}).encode()
        self.send_response(200 if answer else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass  # keep pytest's output clean


class FakeProviderAPI:
    """The OpenAI and Anthropic HTTP APIs on a free loopback port, served from a thread."""

    def __init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _ProviderHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


# --- Fake SDK client objects, for the SDKs (or SDK versions) the test environment does not have ---

def legacy_openai_module() -> SimpleNamespace:
    """The openai<1 module surface the legacy handler patches: `ChatCompletion`, `Completion`, `Image` with `create`."""
    return SimpleNamespace(
        ChatCompletion=SimpleNamespace(create=lambda **request: openai_chat_answer(request)),
        Completion=SimpleNamespace(create=lambda **request: openai_completion_answer(request)),
        Image=SimpleNamespace(create=lambda **request: openai_image_answer(request)),
    )


@dataclass
class LegacyAnthropicCompletion:
    """The old anthropic SDK's `Completion`; the handler serialises it through `__dict__`."""

    id: str
    type: str
    completion: str
    stop_reason: str
    model: str


def legacy_anthropic_client() -> SimpleNamespace:
    """An anthropic<0.20-style client whose `completions.create` answers ` Rayleigh scattering.`."""
    def complete(**request) -> LegacyAnthropicCompletion:
        return LegacyAnthropicCompletion(f"compl_{uuid.uuid4().hex}", "completion", " Rayleigh scattering.",
                                         "stop_sequence", request["model"])

    def unused(**request):
        raise AssertionError("only completions.create is called on the legacy client")

    return SimpleNamespace(completions=SimpleNamespace(create=complete), messages=SimpleNamespace(create=unused))


class FakeBedrockRuntime:
    """A bedrock-runtime client whose `invoke_model` returns `answer` the way boto3 does: a StreamingBody."""

    def __init__(self) -> None:
        self.answer: dict = {}
        self.request_ids: list[str] = []

    def invoke_model(self, **request) -> dict:
        raw = json.dumps(self.answer).encode()
        self.request_ids.append(str(uuid.uuid4()))
        return {"ResponseMetadata": {"RequestId": self.request_ids[-1], "HTTPStatusCode": 200},
                "contentType": "application/json", "body": StreamingBody(io.BytesIO(raw), len(raw))}


def cohere_v4_client() -> SimpleNamespace:
    """cohere v4: `chat` returns an object, `generate` a list of objects; the handler calls `vars()` on them."""
    def chat(**request) -> SimpleNamespace:
        return SimpleNamespace(
            response_id=f"resp-{uuid.uuid4().hex}", generation_id=f"gen-{uuid.uuid4().hex}", text="Bonjour !",
            meta={"api_version": {"version": "1"}, "billed_units": {"input_tokens": 40, "output_tokens": 4}},
            token_count={"prompt_tokens": 52, "response_tokens": 4, "total_tokens": 56, "billed_tokens": 44},
            finish_reason="COMPLETE", client=object(),  # the SDK keeps its client here; the handler drops it
        )

    def generate(**request) -> list[SimpleNamespace]:
        return [SimpleNamespace(id=f"gen-{uuid.uuid4().hex}", text="Steam curls upward", finish_reason="COMPLETE",
                                likelihood=None, prompt=request["prompt"])]

    return SimpleNamespace(chat=chat, generate=generate)


@dataclass
class MistralMessage:
    """mistralai 0.x `ChatMessage`: the handler serialises requests and responses through `__dict__`."""

    role: str
    content: str
    name: str | None = None
    tool_calls: list | None = None


@dataclass
class MistralChoice:
    index: int
    message: MistralMessage
    finish_reason: str


@dataclass
class MistralUsage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


@dataclass
class MistralChatResponse:
    id: str
    object: str
    created: int
    model: str
    choices: list[MistralChoice] = field(default_factory=list)
    usage: MistralUsage | None = None


def mistral_client() -> SimpleNamespace:
    """A mistralai 0.x `MistralClient`: `chat` answers `Bleu.` with usage 15 + 3."""
    def chat(**request) -> MistralChatResponse:
        return MistralChatResponse(
            id=f"cmpl-{uuid.uuid4().hex}", object="chat.completion", created=int(time.time()), model=request["model"],
            choices=[MistralChoice(0, MistralMessage("assistant", "Bleu."), "stop")],
            usage=MistralUsage(15, 3, 18),
        )

    return SimpleNamespace(chat=chat)
