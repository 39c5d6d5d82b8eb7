"""Drives a running InstaGen's Anthropic Messages API with the official `anthropic` package.

Run by tests/api/agent_sdks.rs, one phase per run (the first argument), so that the test
can script the mock upstream between phases, once in front of an OpenAI-compatible engine
(translated; INSTAGEN_UPSTREAM=openai) and once in front of an Anthropic provider (passed
through; INSTAGEN_UPSTREAM=anthropic, where the message names the provider's model):

- `basic`: a plain message, a raw event stream, the `messages.stream` helper, token
  counting and the model list (3 recorded requests; token counts and models are not);
- `tools`: a tool loop (3 upstream requests; the test scripts the first two to call
  `get_weather`);
- `errors`: every error class the server can be made to answer, each the SDK's own (the
  test scripts the upstream to answer 429, then 500, then 429 again, and before those,
  in front of an Anthropic provider, which gets the malformed message, 400;
  INSTAGEN_OTHER_KEY is a key that may not use the model); all but the bad key's are
  recorded.
"""
import json
import os
import sys

import anthropic
from anthropic import Anthropic

base = os.environ["INSTAGEN_BASE_URL"].removesuffix("/").removesuffix("/v1")
key = os.environ["INSTAGEN_KEY"]
model = os.environ["INSTAGEN_MODEL"]
client = Anthropic(base_url=base, api_key=key, max_retries=0)
REPLY = "Hello from the mock upstream."
USER = [{"role": "user", "content": "one two three"}]


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}")
        sys.exit(1)
    print(f"ok: {what}")


def expect_error(call, cls, status, error_type, what):
    """Runs `call`, which must raise the SDK's `cls` with `status` and an Anthropic-shaped
    body of `error_type`; returns the exception."""
    try:
        call()
    except anthropic.APIStatusError as e:
        check(isinstance(e, cls) and e.status_code == status,
              f"{what}: {type(e).__name__} {e.status_code} (want {cls.__name__} {status})")
        body = e.body if isinstance(e.body, dict) else {}
        check(body.get("type") == "error" and body.get("error", {}).get("type") == error_type
              and isinstance(body["error"].get("message"), str),
              f"{what}: Anthropic error body of type {error_type}: {e.body}")
        return e
    check(False, f"{what} raises {cls.__name__}")


def basic():
    m = client.messages.create(model=model, max_tokens=64, messages=USER, metadata={"user_id": "alice"})
    check(m.type == "message" and m.role == "assistant", "create: an assistant message")
    check([b.type for b in m.content] == ["text"] and m.content[0].text == REPLY,
          f"create text: {m.content}")
    check(m.stop_reason == "end_turn", f"create stop_reason: {m.stop_reason}")
    check(m.usage.input_tokens == 3 and m.usage.output_tokens == 5, f"create usage: {m.usage}")
    if os.environ.get("INSTAGEN_UPSTREAM") == "openai":
        check(m.model == model, f"create model: {m.model}")

    types, text = [], ""
    for event in client.messages.create(model=model, max_tokens=64, messages=USER, stream=True):
        types.append(event.type)
        if event.type == "content_block_delta" and event.delta.type == "text_delta":
            text += event.delta.text
    check(text == REPLY, f"raw stream text: {text!r}")
    check(types[0] == "message_start" and types[-1] == "message_stop",
          f"raw stream framing: {types[0]} … {types[-1]}")
    check("message_delta" in types, "raw stream has message_delta")

    with client.messages.stream(model=model, max_tokens=64, messages=USER) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    check(streamed == REPLY, f"text_stream: {streamed!r}")
    check(final.content[0].text == REPLY and final.stop_reason == "end_turn",
          f"get_final_message: {final.content} {final.stop_reason}")
    check(final.usage.output_tokens == 5 and final.usage.input_tokens == 3,
          f"get_final_message usage: {final.usage}")

    counted = client.messages.count_tokens(model=model, messages=USER)
    check(counted.input_tokens > 0, f"count_tokens: {counted.input_tokens}")
    raw = client.messages.with_raw_response.count_tokens(model=model, messages=USER)
    check(raw.headers.get("x-instagen-token-count") in ("exact", "estimate"),
          f"count_tokens label: {raw.headers.get('x-instagen-token-count')}")

    page = client.models.list()
    ids = [m.id for m in page]
    check(ids == [model], f"models.list: {ids}")
    check(page.data[0].type == "model" and page.data[0].display_name, "models.list: Anthropic model cards")
    check(page.has_more is False and page.first_id == model and page.last_id == model,
          f"models.list paging: {page.has_more} {page.first_id} {page.last_id}")
    info = client.models.retrieve(model)
    check(info.id == model, f"models.retrieve: {info.id}")


TOOLS = [{
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}]


def tools():
    history = [{"role": "user", "content": "What is the weather in Oslo?"}]
    m = client.messages.create(model=model, max_tokens=256, messages=history, tools=TOOLS)
    check(m.stop_reason == "tool_use", f"stop_reason tool_use: {m.stop_reason}")
    uses = [b for b in m.content if b.type == "tool_use"]
    check(len(uses) == 1 and uses[0].name == "get_weather" and uses[0].input == {"city": "Oslo"},
          f"tool_use block: {m.content}")
    use = uses[0]
    check(bool(use.id), "tool_use has an id")

    # The same call, streamed through the helper: the input arrives as JSON deltas.
    with client.messages.stream(model=model, max_tokens=256, messages=history, tools=TOOLS) as stream:
        partial = "".join(e.delta.partial_json for e in stream
                          if e.type == "content_block_delta" and e.delta.type == "input_json_delta")
        final = stream.get_final_message()
    check(json.loads(partial) == {"city": "Oslo"}, f"streamed input_json deltas: {partial!r}")
    streamed = [b for b in final.content if b.type == "tool_use"]
    check(len(streamed) == 1 and streamed[0].input == {"city": "Oslo"} and final.stop_reason == "tool_use",
          f"streamed tool_use: {final.content} {final.stop_reason}")

    history.append({"role": "assistant", "content": m.content})
    history.append({"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": use.id, "content": json.dumps({"temperature_c": 3})},
    ]})
    m2 = client.messages.create(model=model, max_tokens=256, messages=history, tools=TOOLS)
    check(m2.stop_reason == "end_turn" and m2.content[0].text == REPLY, f"answer after tool_result: {m2.content}")


def errors():
    bad = Anthropic(base_url=base, api_key="ig-wrong", max_retries=0)
    expect_error(lambda: bad.messages.create(model=model, max_tokens=8, messages=USER),
                 anthropic.AuthenticationError, 401, "authentication_error", "bad key")
    expect_error(lambda: bad.messages.count_tokens(model=model, messages=USER),
                 anthropic.AuthenticationError, 401, "authentication_error", "bad key, count_tokens")
    expect_error(lambda: client.messages.create(model="no-such-model", max_tokens=8, messages=USER),
                 anthropic.NotFoundError, 404, "not_found_error", "unknown model")
    expect_error(lambda: client.messages.create(model=model, max_tokens=8,
                                                messages=[{"role": "nobody", "content": "x"}]),
                 anthropic.BadRequestError, 400, "invalid_request_error", "malformed message")
    other = Anthropic(base_url=base, api_key=os.environ["INSTAGEN_OTHER_KEY"], max_retries=0)
    expect_error(lambda: other.messages.create(model=model, max_tokens=8, messages=USER),
                 anthropic.PermissionDeniedError, 403, "permission_error", "a key that may not use the model")
    # Scripted upstream failures, in this order: 429, 500, 429 (streamed).
    expect_error(lambda: client.messages.create(model=model, max_tokens=8, messages=USER),
                 anthropic.RateLimitError, 429, "rate_limit_error", "upstream 429")
    expect_error(lambda: client.messages.create(model=model, max_tokens=8, messages=USER),
                 anthropic.InternalServerError, 502, "api_error", "upstream 500")

    def streamed():
        with client.messages.stream(model=model, max_tokens=8, messages=USER) as stream:
            stream.until_done()
    expect_error(streamed, anthropic.RateLimitError, 429, "rate_limit_error", "upstream 429, streamed")


{"basic": basic, "tools": tools, "errors": errors}[sys.argv[1]]()
print("ALL OK")
