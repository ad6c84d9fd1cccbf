"""Payload builders shaped like what the Reconify client modules send."""

import itertools
import time

_ids = itertools.count(1)


def openai_chat(keys, *, user=None, session="", session_timeout="", at_ms=None, text="Tell a cat joke",
                response_id=None, usage=True, model="gpt-4o-mini-2024-07-18") -> dict:
    at_ms = at_ms if at_ms is not None else int(time.time() * 1000)
    response = {
        "id": response_id or f"chatcmpl-{next(_ids)}-{time.time_ns()}", "object": "chat.completion",
        "created": at_ms // 1000, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": f"Answer to: {text}"},
                     "finish_reason": "stop"}],
    }
    if usage:
        response["usage"] = {"prompt_tokens": 21, "completion_tokens": 31, "total_tokens": 52}
    return {
        "reconify": {"format": "openai", "type": "chat", "version": "3.0.0",
                     "appKey": keys.app_key, "apiKey": keys.api_key},
        "request": {"model": "gpt-4o-mini", "messages": [{"role": "system", "content": "You are a comic"},
                                                          {"role": "user", "content": text}]},
        "response": response,
        "user": user if user is not None else {},
        "session": session,
        "sessionTimeout": session_timeout,
        "timestamps": {"request": at_ms, "response": at_ms + 850},
    }
