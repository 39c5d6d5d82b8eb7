"""Drives a running InstaGen's Responses API with the official `openai` package.

Run by tests/api/agent_sdks.rs, one phase per run (the first argument), so that the test
can script the mock upstream between phases:

- `basic`: models.retrieve, a plain response, a raw event stream, the `responses.stream`
  helper, and the errors of a stateless server (3 upstream requests, default script; 5
  recorded: the 400 and the unknown model's 404 too);
- `structured`: `responses.parse` with a pydantic `text_format` (1 upstream request; the
  test scripts the JSON reply);
- `tools`: a function tool loop, stateless (3 upstream requests; the test scripts the
  first two to call `get_weather`).
"""
import json
import os
import sys

import openai
from openai import OpenAI
from pydantic import BaseModel

base = os.environ["INSTAGEN_BASE_URL"]
key = os.environ["INSTAGEN_KEY"]
model = os.environ["INSTAGEN_MODEL"]
client = OpenAI(base_url=base, api_key=key, max_retries=0)
REPLY = "Hello from the mock upstream."


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}")
        sys.exit(1)
    print(f"ok: {what}")


def expect_error(call, cls, what):
    """Runs `call`, which must raise the SDK's `cls`; returns the exception."""
    try:
        call()
    except openai.APIStatusError as e:
        check(isinstance(e, cls), f"{what}: {type(e).__name__} {e.status_code} {e.body}")
        return e
    check(False, f"{what} raises {cls.__name__}")


def basic():
    m = client.models.retrieve(model)
    check(m.id == model, "models.retrieve")

    r = client.responses.create(model=model, input="one two three")
    check(r.output_text == REPLY, f"plain output_text: {r.output_text!r}")
    check(r.status == "completed", f"plain status: {r.status}")
    check(r.object == "response" and r.id.startswith("resp"), f"plain id: {r.id}")
    check(r.usage.input_tokens > 0 and r.usage.output_tokens == 5, f"plain usage: {r.usage}")
    check(r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens, "plain total_tokens")
    msgs = [o for o in r.output if o.type == "message"]
    check(len(msgs) == 1 and msgs[0].role == "assistant", "one assistant message item")

    deltas, completed, types = [], [], []
    for event in client.responses.create(model=model, input="hi there", stream=True):
        types.append(event.type)
        if event.type == "response.output_text.delta":
            deltas.append(event.delta)
        elif event.type == "response.completed":
            completed.append(event.response)
    check("".join(deltas) == REPLY, f"stream text: {''.join(deltas)!r}")
    check(types[0] == "response.created", f"stream starts with response.created: {types[:3]}")
    check(types[-1] == "response.completed", f"stream ends with response.completed: {types[-3:]}")
    check(len(completed) == 1, "one response.completed event")
    done = completed[0]
    check(done.status == "completed" and done.output_text == REPLY, "completed response holds the text")
    check(done.usage is not None and done.usage.input_tokens > 0 and done.usage.output_tokens == 5,
          f"completed usage: {done.usage}")

    with client.responses.stream(model=model, input="stream helper") as stream:
        helper_text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    check(helper_text == REPLY, f"responses.stream text: {helper_text!r}")
    check(final.output_text == REPLY and final.status == "completed", "get_final_response")
    check(final.usage.output_tokens == 5, "get_final_response usage")

    e = expect_error(
        lambda: client.responses.create(model=model, input="x", previous_response_id="resp_x"),
        openai.BadRequestError, "previous_response_id")
    check(e.param == "previous_response_id", f"error names previous_response_id: {e.param}")
    expect_error(lambda: client.responses.retrieve("resp_x"), openai.NotFoundError, "responses.retrieve")
    expect_error(lambda: client.responses.delete("resp_x"), openai.NotFoundError, "responses.delete")
    bad = OpenAI(base_url=base, api_key="ig-wrong", max_retries=0)
    expect_error(lambda: bad.responses.create(model=model, input="x"), openai.AuthenticationError, "bad key")
    e = expect_error(lambda: client.responses.create(model="no-such-model", input="x"),
                     openai.NotFoundError, "unknown model")
    check(e.code == "model_not_found", f"unknown model code: {e.code}")


class Weather(BaseModel):
    city: str
    temperature_c: int


def structured():
    r = client.responses.parse(model=model, input="Weather in Oslo as JSON", text_format=Weather)
    check(r.status == "completed", "parse status")
    check(r.output_parsed == Weather(city="Oslo", temperature_c=3), f"output_parsed: {r.output_parsed!r}")


TOOLS = [{
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}]


def tools():
    history = [{"role": "user", "content": "What is the weather in Oslo?"}]
    r = client.responses.create(model=model, input=history, tools=TOOLS)
    calls = [o for o in r.output if o.type == "function_call"]
    check(len(calls) == 1, f"one function_call item: {[o.type for o in r.output]}")
    call = calls[0]
    check(call.name == "get_weather" and json.loads(call.arguments) == {"city": "Oslo"},
          f"function_call: {call.name} {call.arguments}")
    check(bool(call.call_id), "function_call has a call_id")

    # The same call, streamed through the helper: arguments arrive as deltas.
    with client.responses.stream(model=model, input=history, tools=TOOLS) as stream:
        arg_deltas = "".join(e.delta for e in stream if e.type == "response.function_call_arguments.delta")
        final = stream.get_final_response()
    streamed = [o for o in final.output if o.type == "function_call"]
    check(json.loads(arg_deltas) == {"city": "Oslo"}, f"streamed argument deltas: {arg_deltas!r}")
    check(len(streamed) == 1 and streamed[0].name == "get_weather"
          and json.loads(streamed[0].arguments) == {"city": "Oslo"}, "streamed function_call item")

    # Stateless: the whole conversation goes back, with the tool's output.
    history += r.output
    history.append({"type": "function_call_output", "call_id": call.call_id,
                    "output": json.dumps({"temperature_c": 3})})
    r2 = client.responses.create(model=model, input=history, tools=TOOLS)
    check(r2.output_text == REPLY, f"answer after the tool output: {r2.output_text!r}")
    check(not [o for o in r2.output if o.type == "function_call"], "no further call")


{"basic": basic, "structured": structured, "tools": tools}[sys.argv[1]]()
print("ALL OK")
