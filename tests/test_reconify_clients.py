"""The real Reconify Python client modules, around fake provider SDKs, report to a live Tally that reads back right."""

import json
from collections.abc import Callable
from dataclasses import dataclass

import anthropic
import openai
import pytest
import requests
import sqlalchemy
from reconify import (
    reconifyAnthropicHandler,
    reconifyBedrockRuntimeHandler,
    reconifyCohereHandler,
    reconifyMistralHandler,
    reconifyOpenAIHandler,
    reconifyOpenAILegacyHandler,
    reconifyUniversalHandler,
)

from tests.reconify_fakes import (
    FakeBedrockRuntime,
    FakeProviderAPI,
    MistralMessage,
    b64_png,
    cohere_v4_client,
    fake_png,
    legacy_anthropic_client,
    legacy_openai_module,
    mistral_client,
)


class Tally:
    """The live server as the client modules see it: where they post, what it answered, and what it stored."""

    def __init__(self, live_server, app_keys, engine, reader, monkeypatch) -> None:
        self.url, self.keys, self.engine, self.reader = live_server.url, app_keys, engine, reader
        self.posts: list[tuple[dict, requests.Response]] = []
        real_post = requests.post

        def spying_post(url, **kwargs):  # the modules drop our answer; keep it, to report a rejected payload
            answer = real_post(url, **kwargs)
            self.posts.append((kwargs["json"], answer))
            return answer

        monkeypatch.setattr(requests, "post", spying_post)

    def hook(self, module, *client) -> None:
        """Point a module at this server, patching `client`; reset the user and session another test may have left."""
        module.config(*client, self.keys.app_key, self.keys.api_key,
                      tracker=f"{self.url}/track", uploader=f"{self.url}/upload")
        module.setUser({})
        module.setSession("")
        module.setSessionTimeout("")

    def stored_by(self, call: Callable[[], object]) -> list[dict]:
        """Run one client call; return the interactions it stored, newest last, as the read API shows them."""
        before = self._newest_id()
        self.posts.clear()
        call()
        rejected = [(answer.url, answer.status_code, answer.text)
                    for _, answer in self.posts if answer.status_code >= 300]
        assert self.posts and not rejected, rejected or "the module posted nothing"
        with self.engine.connect() as conn:
            ids = conn.execute(sqlalchemy.text("SELECT id FROM interaction WHERE id > :before ORDER BY id"),
                               {"before": before}).scalars().all()
        return [self.read(f"/api/v1/interactions/{interaction_id}") for interaction_id in ids]

    def read(self, path: str) -> dict:
        answer = self.reader.get(path)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def stored_column(self, interaction_id: int, column: str):
        """A column the read API does not show."""
        with self.engine.connect() as conn:
            return conn.execute(sqlalchemy.text(f"SELECT {column} FROM interaction WHERE id = :id"),
                                {"id": interaction_id}).scalar_one()

    def _newest_id(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sqlalchemy.text("SELECT coalesce(max(id), 0) FROM interaction")).scalar_one()


@pytest.fixture
def tally(live_server, app_keys, engine, reader, monkeypatch) -> Tally:
    return Tally(live_server, app_keys, engine, reader, monkeypatch)


@pytest.fixture
def provider_api():
    api = FakeProviderAPI()
    yield api
    api.close()


def fields(interaction: dict, *names: str) -> dict:
    return {name: interaction[name] for name in names}


USAGE = ("prompt_tokens", "completion_tokens", "total_tokens", "usage_source")


def assert_uploaded_images(tally: Tally, interaction: dict, expected_bytes: list[bytes]) -> None:
    """Each image the interaction names was uploaded, linked to it, and serves back the bytes sent."""
    images = interaction["images"]
    assert [image["uploaded"] for image in images] == [True] * len(expected_bytes)
    for image, content in zip(images, expected_bytes, strict=True):
        answer = tally.reader.get(image["url"])
        assert answer.status_code == 200 and answer.content == content
    upload_answers = [answer.json() for payload, answer in tally.posts if payload["reconify"]["type"] == "image_upload"]
    assert [answer["interaction_id"] for answer in upload_answers] == [interaction["id"]] * len(expected_bytes)


# --- OpenAI: the current SDK over HTTP, and the openai<1 module surface the legacy handler patches ---

@dataclass
class OpenAICalls:
    module: object  # the handler, for setUser and friends
    chat: Callable
    complete: Callable
    image: Callable


@pytest.fixture(params=["sdk", "legacy"])
def openai_calls(request, tally, provider_api) -> OpenAICalls:
    """Both handlers send the API's JSON as is, so Tally must read them the same way."""
    if request.param == "sdk":
        client = openai.OpenAI(api_key="x", base_url=f"{provider_api.url}/v1", max_retries=0)
        tally.hook(reconifyOpenAIHandler, client)
        return OpenAICalls(reconifyOpenAIHandler, client.chat.completions.create, client.completions.create,
                           client.images.generate)
    module = legacy_openai_module()
    tally.hook(reconifyOpenAILegacyHandler, module)
    return OpenAICalls(reconifyOpenAILegacyHandler, module.ChatCompletion.create, module.Completion.create,
                       module.Image.create)


def test_openai_chat(tally, openai_calls):
    [chat] = tally.stored_by(lambda: openai_calls.chat(model="gpt-4o-mini", messages=[
        {"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a colour"}]))
    assert fields(chat, "provider", "type", "model", "input_text", "output_text", "finish_reason", "is_error") == {
        "provider": "openai", "type": "chat", "model": "gpt-4o-mini-2024-07-18", "input_text": "Name a colour",
        "output_text": "Echo: Name a colour", "finish_reason": "stop", "is_error": False}
    assert fields(chat, *USAGE, "cached_prompt_tokens") == {
        "prompt_tokens": 19, "completion_tokens": 9, "total_tokens": 28, "usage_source": "reported",
        "cached_prompt_tokens": 4}
    assert chat["response_ref"] == chat["response"]["id"] and chat["response_ref"].startswith("chatcmpl-")
    assert chat["request"]["messages"][1] == {"role": "user", "content": "Name a colour"}
    assert chat["client_version"] == "3.0.0"


def test_openai_completion(tally, openai_calls):
    [completion] = tally.stored_by(lambda: openai_calls.complete(model="gpt-3.5-turbo-instruct",
                                                                 prompt="The sky is", max_tokens=2))
    assert fields(completion, "type", "model", "input_text", "output_text", "finish_reason") == {
        "type": "completion", "model": "gpt-3.5-turbo-instruct", "input_text": "The sky is",
        "output_text": " blue.", "finish_reason": "length"}
    assert fields(completion, *USAGE) == {"prompt_tokens": 6, "completion_tokens": 2, "total_tokens": 8,
                                          "usage_source": "reported"}


def test_openai_image_links(tally, openai_calls):
    [image] = tally.stored_by(lambda: openai_calls.image(model="dall-e-3", prompt="a watercolour fox"))
    assert fields(image, "type", "model", "input_text", "image_count", "images", "usage_source", "prompt_tokens") == {
        "type": "image", "model": "dall-e-3", "input_text": "a watercolour fox", "image_count": 1, "images": [],
        "usage_source": "absent", "prompt_tokens": None}
    assert [item["url"] for item in image["response"]["data"]] == ["https://images.example/fox-0.png"]


def test_openai_image_data_is_uploaded_and_linked(tally, openai_calls):
    # With b64_json the module tracks file names in place of the data, then posts each image to /upload.
    [image] = tally.stored_by(lambda: openai_calls.image(model="dall-e-2", prompt="two foxes", n=2,
                                                         response_format="b64_json"))
    assert fields(image, "type", "model", "input_text", "image_count", "usage_source") == {
        "type": "image", "model": "dall-e-2", "input_text": "two foxes", "image_count": 2, "usage_source": "absent"}
    assert [image["filename"] for image in image["images"]] == image["response"]["data"]
    assert image["response"]["data"][1].endswith("-1.png")
    assert_uploaded_images(tally, image, [fake_png(0), fake_png(1)])


# --- Anthropic: the current SDK's Messages API over HTTP, and a pre-Messages client for Text Completions ---

def test_anthropic_messages(tally, provider_api):
    client = anthropic.Anthropic(api_key="x", base_url=provider_api.url, max_retries=0)
    # reconify 3.0.0's config() also patches `completions`, which this SDK no longer has: lend it the legacy one.
    client.completions = legacy_anthropic_client().completions
    tally.hook(reconifyAnthropicHandler, client)
    [chat] = tally.stored_by(lambda: client.messages.create(
        model="claude-haiku-4-5", max_tokens=50, system="Answer in one word.",
        messages=[{"role": "user", "content": "Capital of France?"}]))
    assert fields(chat, "provider", "type", "model", "input_text", "output_text", "finish_reason") == {
        "provider": "anthropic", "type": "chat", "model": "claude-haiku-4-5-20251001",
        "input_text": "Capital of France?", "output_text": "Paris", "finish_reason": "end_turn"}
    # Anthropic counts tokens read from the prompt cache apart; Tally's prompt tokens include them.
    assert fields(chat, *USAGE, "cached_prompt_tokens") == {
        "prompt_tokens": 30, "completion_tokens": 3, "total_tokens": 33, "usage_source": "reported",
        "cached_prompt_tokens": 5}
    assert chat["response_ref"].startswith("msg_")


def test_anthropic_legacy_completion(tally):
    client = legacy_anthropic_client()
    tally.hook(reconifyAnthropicHandler, client)
    [completion] = tally.stored_by(lambda: client.completions.create(
        model="claude-2.1", max_tokens_to_sample=20, prompt="\n\nHuman: Why is the sky blue?\n\nAssistant:"))
    assert fields(completion, "type", "model", "input_text", "output_text", "finish_reason") == {
        "type": "completion", "model": "claude-2.1", "input_text": "Why is the sky blue?",
        "output_text": "Rayleigh scattering.", "finish_reason": "stop_sequence"}
    # No usage in the legacy API: estimated at one token per four characters.
    assert fields(completion, *USAGE) == {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10,
                                          "usage_source": "estimated"}


# --- Bedrock: one InvokeModel body shape per model family ---

@pytest.fixture
def bedrock(tally) -> FakeBedrockRuntime:
    client = FakeBedrockRuntime()
    tally.hook(reconifyBedrockRuntimeHandler, client)
    return client


BEDROCK_TEXT_MODELS = {
    "anthropic.claude-v2": (
        {"prompt": "\n\nHuman: Name a prime number.\n\nAssistant:", "max_tokens_to_sample": 20},
        {"completion": " 7 is prime.", "stop_reason": "stop_sequence", "stop": "\n\nHuman:"},
        {"input_text": "Name a prime number.", "output_text": "7 is prime.", "finish_reason": "stop_sequence",
         "prompt_tokens": 5, "completion_tokens": 3, "usage_source": "estimated"}),
    "anthropic.claude-3-haiku-20240307-v1:0": (
        {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 50, "system": "Be brief.",
         "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi there"}]}]},
        {"id": "msg_bdrk_01", "type": "message", "role": "assistant", "model": "claude-3-haiku-20240307",
         "content": [{"type": "text", "text": "Hello!"}], "stop_reason": "end_turn", "stop_sequence": None,
         "usage": {"input_tokens": 14, "output_tokens": 4}},
        {"input_text": "Hi there", "output_text": "Hello!", "finish_reason": "end_turn",
         "prompt_tokens": 14, "completion_tokens": 4, "usage_source": "reported"}),
    "meta.llama3-8b-instruct-v1:0": (
        {"prompt": "What is Rust?", "max_gen_len": 64, "temperature": 0.5},
        {"generation": "A systems language.", "prompt_token_count": 17, "generation_token_count": 5,
         "stop_reason": "stop"},
        {"input_text": "What is Rust?", "output_text": "A systems language.", "finish_reason": "stop",
         "prompt_tokens": 17, "completion_tokens": 5, "usage_source": "reported"}),
    "amazon.titan-text-express-v1": (
        {"inputText": "Summarise: cats sleep a lot.", "textGenerationConfig": {"maxTokenCount": 50}},
        {"inputTextTokenCount": 8, "results": [{"tokenCount": 4, "outputText": "Cats nap often.",
                                                "completionReason": "FINISH"}]},
        {"input_text": "Summarise: cats sleep a lot.", "output_text": "Cats nap often.", "finish_reason": "FINISH",
         "prompt_tokens": 8, "completion_tokens": 4, "usage_source": "reported"}),
    "cohere.command-text-v14": (
        {"prompt": "Say hi", "max_tokens": 20},
        {"id": "gen-batch-1", "prompt": "Say hi",
         "generations": [{"id": "gen-1", "text": "Hi there!", "finish_reason": "COMPLETE"}]},
        {"input_text": "Say hi", "output_text": "Hi there!", "finish_reason": "COMPLETE",
         "prompt_tokens": 2, "completion_tokens": 3, "usage_source": "estimated"}),
    "cohere.command-r-v1:0": (
        {"message": "And in French?", "preamble": "You translate.",
         "chat_history": [{"role": "USER", "message": "Say hello"}, {"role": "CHATBOT", "message": "Hello"}]},
        {"response_id": "resp-1", "generation_id": "gen-r-1", "text": "Bonjour", "finish_reason": "COMPLETE"},
        # Estimated over preamble, history and message (4 + 3 + 2 + 4), plus 4 framing tokens per message.
        {"input_text": "And in French?", "output_text": "Bonjour", "finish_reason": "COMPLETE",
         "prompt_tokens": 29, "completion_tokens": 2, "usage_source": "estimated"}),
    "mistral.mistral-7b-instruct-v0:2": (
        {"prompt": "<s>[INST] Name a colour [/INST]", "max_tokens": 20},
        {"outputs": [{"text": "Blue.", "stop_reason": "stop"}]},
        {"input_text": "<s>[INST] Name a colour [/INST]", "output_text": "Blue.", "finish_reason": "stop",
         "prompt_tokens": 8, "completion_tokens": 2, "usage_source": "estimated"}),
    "ai21.j2-ultra-v1": (
        {"prompt": "The quick brown", "maxTokens": 5},
        {"id": 1234, "prompt": {"text": "The quick brown", "tokens": [{"token": "▁The"}, {"token": "▁quick"},
                                                                       {"token": "▁brown"}]},
         "completions": [{"data": {"text": " fox", "tokens": [{"token": "▁fox"}]},
                          "finishReason": {"reason": "endoftext"}}]},
        # Jurassic reports token lists, not counts.
        {"input_text": "The quick brown", "output_text": " fox", "finish_reason": "endoftext",
         "prompt_tokens": 3, "completion_tokens": 1, "usage_source": "reported"}),
}


@pytest.mark.parametrize("model_id", BEDROCK_TEXT_MODELS)
def test_bedrock_text_model(tally, bedrock, model_id):
    request_body, bedrock.answer, expected = BEDROCK_TEXT_MODELS[model_id]
    [chat] = tally.stored_by(lambda: bedrock.invoke_model(
        modelId=model_id, contentType="application/json", accept="application/json", body=json.dumps(request_body)))
    assert fields(chat, "provider", "type", "model", "is_error") == {
        "provider": "bedrock", "type": "chat", "model": model_id, "is_error": False}
    assert fields(chat, *expected) == expected
    assert chat["total_tokens"] == expected["prompt_tokens"] + expected["completion_tokens"]
    assert chat["response"]["requestId"] == bedrock.request_ids[-1]


BEDROCK_IMAGE_MODELS = {
    "stability.stable-diffusion-xl-v1": (
        {"text_prompts": [{"text": "a red fox", "weight": 1}, {"text": "blurry", "weight": -1}], "seed": 42},
        {"result": "success", "artifacts": [{"seed": 42, "base64": b64_png(0), "finishReason": "SUCCESS"}]},
        # A negative-weight prompt is what to avoid, not what was asked for.
        {"input_text": "a red fox", "image_count": 1, "finish_reason": "SUCCESS"}),
    "amazon.titan-image-generator-v1": (
        {"taskType": "TEXT_IMAGE", "textToImageParams": {"text": "a lighthouse at dusk"},
         "imageGenerationConfig": {"numberOfImages": 2}},
        {"images": [b64_png(0), b64_png(1)], "error": None},
        {"input_text": "a lighthouse at dusk", "image_count": 2, "finish_reason": None}),
}


@pytest.mark.parametrize("model_id", BEDROCK_IMAGE_MODELS)
def test_bedrock_image_model_uploads(tally, bedrock, model_id):
    request_body, bedrock.answer, expected = BEDROCK_IMAGE_MODELS[model_id]
    [image] = tally.stored_by(lambda: bedrock.invoke_model(modelId=model_id, body=json.dumps(request_body)))
    assert fields(image, "provider", "type", "model", "usage_source", "prompt_tokens", "is_error") == {
        "provider": "bedrock", "type": "image", "model": model_id, "usage_source": "absent", "prompt_tokens": None,
        "is_error": False}
    assert fields(image, *expected) == expected
    assert_uploaded_images(tally, image, [fake_png(i) for i in range(expected["image_count"])])


# --- Cohere (v4 SDK objects), Mistral (0.x SDK objects) and the universal module ---

def test_cohere_chat(tally):
    client = cohere_v4_client()
    tally.hook(reconifyCohereHandler, client)
    [chat] = tally.stored_by(lambda: client.chat(
        model="command-r", message="How do you say hello in French?", preamble="You are a translator.",
        chat_history=[{"role": "USER", "message": "Hi"}, {"role": "CHATBOT", "message": "Hello! How can I help?"}]))
    assert fields(chat, "provider", "type", "model", "input_text", "output_text", "finish_reason") == {
        "provider": "cohere", "type": "chat", "model": "command-r", "input_text": "How do you say hello in French?",
        "output_text": "Bonjour !", "finish_reason": "COMPLETE"}
    # Billed units win over token_count, which also counts the preamble Cohere adds.
    assert fields(chat, *USAGE) == {"prompt_tokens": 40, "completion_tokens": 4, "total_tokens": 44,
                                    "usage_source": "reported"}
    assert chat["response_ref"] == chat["response"]["generation_id"] and "client" not in chat["response"]


def test_cohere_generate(tally):
    client = cohere_v4_client()
    tally.hook(reconifyCohereHandler, client)
    [completion] = tally.stored_by(lambda: client.generate(model="command", prompt="Write a haiku about tea"))
    assert fields(completion, "type", "model", "input_text", "output_text", "finish_reason") == {
        "type": "completion", "model": "command", "input_text": "Write a haiku about tea",
        "output_text": "Steam curls upward", "finish_reason": "COMPLETE"}
    assert fields(completion, *USAGE) == {"prompt_tokens": 6, "completion_tokens": 5, "total_tokens": 11,
                                          "usage_source": "estimated"}
    assert completion["response_ref"] == completion["response"]["generations"][0]["id"]


def test_mistral_chat(tally):
    client = mistral_client()
    tally.hook(reconifyMistralHandler, client)
    [chat] = tally.stored_by(lambda: client.chat(model="mistral-small-latest", messages=[
        MistralMessage("system", "Answer in French."), MistralMessage("user", "What colour is the sky?")]))
    assert fields(chat, "provider", "type", "model", "input_text", "output_text", "finish_reason") == {
        "provider": "mistral", "type": "chat", "model": "mistral-small-latest",
        "input_text": "What colour is the sky?", "output_text": "Bleu.", "finish_reason": "stop"}
    assert fields(chat, *USAGE) == {"prompt_tokens": 15, "completion_tokens": 3, "total_tokens": 18,
                                    "usage_source": "reported"}


def test_universal_plain_string_response(tally):
    tally.hook(reconifyUniversalHandler)
    started = reconifyUniversalHandler.getTimestamp()
    [chat] = tally.stored_by(lambda: reconifyUniversalHandler.logChat(
        "Capital of Italy?", "Rome.", started, started + 1234))
    assert fields(chat, "provider", "type", "model", "input_text", "output_text", "latency_ms", "response") == {
        "provider": "universal", "type": "chat", "model": None, "input_text": "Capital of Italy?",
        "output_text": "Rome.", "latency_ms": 1234, "response": "Rome."}
    # Estimated, with four tokens of framing for the one chat message.
    assert fields(chat, *USAGE) == {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11,
                                    "usage_source": "estimated"}


def test_universal_message_list_request(tally):
    tally.hook(reconifyUniversalHandler)
    started = reconifyUniversalHandler.getTimestamp()
    conversation = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Bye"}]
    [chat] = tally.stored_by(lambda: reconifyUniversalHandler.logChat(conversation, "Goodbye", started, started + 5))
    assert fields(chat, "input_text", "output_text") == {"input_text": "Bye", "output_text": "Goodbye"}
    # Four messages of 3, 1, 2 and 1 tokens, each with 4 tokens of chat framing.
    assert fields(chat, "prompt_tokens", "usage_source") == {"prompt_tokens": 23, "usage_source": "estimated"}


def test_universal_json_string_response(tally):
    tally.hook(reconifyUniversalHandler)
    started = reconifyUniversalHandler.getTimestamp()
    answer = json.dumps({"id": "house-1", "model": "house-llm-1", "output": "Roma.",
                         "usage": {"input_tokens": 11, "output_tokens": 2}})
    [chat] = tally.stored_by(lambda: reconifyUniversalHandler.logChat(
        {"question": "Capital of Italy, in Italian?"}, answer, started, started + 40))
    assert fields(chat, "model", "input_text", "output_text", "response_ref", "latency_ms") == {
        "model": "house-llm-1", "input_text": "Capital of Italy, in Italian?", "output_text": "Roma.",
        "response_ref": "house-1", "latency_ms": 40}
    assert fields(chat, *USAGE) == {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13,
                                    "usage_source": "reported"}
    assert chat["response"] == json.loads(answer)  # stored as JSON, not as the string it arrived in


# --- Users and sessions, as set on a module ---

def ask(tally: Tally, openai_calls: OpenAICalls, *messages: dict) -> dict:
    [chat] = tally.stored_by(lambda: openai_calls.chat(model="gpt-4o-mini", messages=list(messages)))
    return chat


def test_set_user_and_session_group_turns(tally, openai_calls):
    openai_calls.module.setUser({"userId": "user-7", "email": "Ada@Example.com", "firstName": "Ada"})
    openai_calls.module.setSession("support-42")
    opening = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hello"}]
    first = ask(tally, openai_calls, *opening)
    # A chat client resends the whole history; the transcript keeps only what each turn adds.
    second = ask(tally, openai_calls, *opening, {"role": "assistant", "content": "Echo: Hello"},
                 {"role": "user", "content": "And goodbye"})
    assert second["session_id"] == first["session_id"] and second["user_id"] == first["user_id"]
    session = tally.read(f"/api/v1/sessions/{first['session_id']}")
    assert fields(session, "session", "interaction_count", "user_ids") == {
        "session": "support-42", "interaction_count": 2, "user_ids": [first["user_id"]]}
    assert [(m["role"], m["content"], m["interaction_id"]) for m in session["messages"]] == [
        ("system", "You are terse.", first["id"]), ("user", "Hello", first["id"]),
        ("assistant", "Echo: Hello", first["id"]),
        ("user", "And goodbye", second["id"]), ("assistant", "Echo: And goodbye", second["id"])]
    user = tally.read(f"/api/v1/users/{first['user_id']}")
    assert fields(user, "user_id", "email", "first_name", "interaction_count", "session_count", "prompt_tokens") == {
        "user_id": "user-7", "email": "Ada@Example.com", "first_name": "Ada", "interaction_count": 2,
        "session_count": 1, "prompt_tokens": 38}


def test_set_session_timeout_applies_to_the_users_session(tally, openai_calls):
    openai_calls.module.setUser({"userId": "user-8"})
    openai_calls.module.setSessionTimeout(5)
    first = ask(tally, openai_calls, {"role": "user", "content": "Hello"})
    second = ask(tally, openai_calls, {"role": "user", "content": "Again"})
    # Without a session string, turns of one user within the timeout share a session.
    assert second["session_id"] == first["session_id"]
    assert tally.stored_column(second["id"], "session_timeout_ms") == 5 * 60_000


def test_unset_user_and_session_are_accepted(tally, openai_calls, live_server):
    first = ask(tally, openai_calls, {"role": "user", "content": "Hello"})
    [(sent, _)] = tally.posts
    assert fields(sent, "user", "session", "sessionTimeout") == {"user": {}, "session": "", "sessionTimeout": ""}
    second = ask(tally, openai_calls, {"role": "user", "content": "Hello"})
    # With nothing to recognise them by, each call is an anonymous user of its own, in a session of its own.
    assert second["user_id"] != first["user_id"] and second["session_id"] != first["session_id"]
    user = tally.read(f"/api/v1/users/{first['user_id']}")
    assert fields(user, "user_id", "email", "interaction_count") == {"user_id": None, "email": None,
                                                                     "interaction_count": 1}
    default_ms = live_server.settings.default_session_timeout_minutes * 60_000
    assert tally.stored_column(first["id"], "session_timeout_ms") == default_ms
