"""Drives a running InstaGen with the official `openai` package (run by tests/api/python_sdk.rs)."""
import os
import sys

import openai
from openai import OpenAI

base = os.environ["INSTAGEN_BASE_URL"]
key = os.environ["INSTAGEN_KEY"]
model = os.environ["INSTAGEN_MODEL"]
client = OpenAI(base_url=base, api_key=key, max_retries=0)


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}")
        sys.exit(1)
    print(f"ok: {what}")


models = client.models.list()
check([m.id for m in models.data] == [model], "models.list")

chat = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "one two three"}])
check(chat.choices[0].message.content == "Hello from the mock upstream.", "chat non-stream content")
check(chat.usage.prompt_tokens == 3 and chat.usage.completion_tokens == 5, "chat non-stream usage")

chunks = list(client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], stream=True))
text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
check(text == "Hello from the mock upstream.", "chat stream content")
check(all(c.usage is None for c in chunks), "no usage chunk unless asked")

chunks = list(client.chat.completions.create(
    model=model, messages=[{"role": "user", "content": "hi"}], stream=True,
    stream_options={"include_usage": True}))
usage = [c.usage for c in chunks if c.usage is not None]
check(len(usage) == 1 and usage[0].completion_tokens == 5, "stream usage chunk when asked")

comp = client.completions.create(model=model, prompt="The capital of France is")
check(comp.choices[0].text == "Hello from the mock upstream.", "completions")

emb = client.embeddings.create(model=model, input=["a b", "c"])
check(len(emb.data) == 2 and len(emb.data[0].embedding) == 4, "embeddings")

try:
    OpenAI(base_url=base, api_key="ig-wrong", max_retries=0).models.list()
    check(False, "bad key raises")
except openai.AuthenticationError as e:
    check(e.status_code == 401, "AuthenticationError")

try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    check(False, "unknown model raises")
except openai.NotFoundError as e:
    check(e.status_code == 404 and e.code == "model_not_found", "NotFoundError")

try:
    client.chat.completions.create(model=model, messages="not a list")
    check(False, "bad messages raises")
except openai.BadRequestError as e:
    check(e.status_code == 400, "BadRequestError")

print("ALL OK")
