// Drives a running InstaGen with the official `openai` npm package (run by tests/api/node_sdk.rs).
import OpenAI from "openai";

const baseURL = process.env.INSTAGEN_BASE_URL;
const apiKey = process.env.INSTAGEN_KEY;
const model = process.env.INSTAGEN_MODEL;
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });

function check(cond, what) {
  if (!cond) {
    console.log(`FAILED: ${what}`);
    process.exit(1);
  }
  console.log(`ok: ${what}`);
}

async function expectError(promise, Cls, status, what) {
  try {
    await promise;
    check(false, `${what} raises`);
  } catch (e) {
    check(e instanceof Cls && e.status === status, `${what}: ${e.constructor.name} ${e.status}`);
    return e;
  }
}

const models = await client.models.list();
check(JSON.stringify(models.data.map((m) => m.id)) === JSON.stringify([model]), "models.list");

const chat = await client.chat.completions.create({
  model,
  messages: [{ role: "user", content: "one two three" }],
});
check(chat.choices[0].message.content === "Hello from the mock upstream.", "chat non-stream content");
check(chat.usage.prompt_tokens === 3 && chat.usage.completion_tokens === 5, "chat non-stream usage");

let text = "";
let usageChunks = 0;
const stream = await client.chat.completions.create({
  model,
  messages: [{ role: "user", content: "hi" }],
  stream: true,
  stream_options: { include_usage: true },
});
for await (const chunk of stream) {
  if (chunk.choices.length) text += chunk.choices[0].delta.content ?? "";
  if (chunk.usage) usageChunks += 1;
}
check(text === "Hello from the mock upstream.", "chat stream content");
check(usageChunks === 1, "stream usage chunk when asked");

// The SDK's stream helper with an abort: the request is cancelled cleanly.
const controller = new AbortController();
const aborted = await client.chat.completions.create(
  { model, messages: [{ role: "user", content: "hi" }], stream: true },
  { signal: controller.signal },
);
controller.abort();
let abortedCleanly = false;
try {
  for await (const _ of aborted) {
    // nothing
  }
  abortedCleanly = true;
} catch (e) {
  abortedCleanly = e instanceof OpenAI.APIUserAbortError || e.name === "AbortError";
}
check(abortedCleanly, "aborting a stream");

const comp = await client.completions.create({ model, prompt: "The capital of France is" });
check(comp.choices[0].text === "Hello from the mock upstream.", "completions");

const emb = await client.embeddings.create({ model, input: ["a b", "c"] });
check(emb.data.length === 2 && emb.data[0].embedding.length === 4, "embeddings");

await expectError(
  new OpenAI({ baseURL, apiKey: "ig-wrong", maxRetries: 0 }).models.list(),
  OpenAI.AuthenticationError,
  401,
  "bad key",
);
const notFound = await expectError(
  client.chat.completions.create({ model: "no-such-model", messages: [{ role: "user", content: "x" }] }),
  OpenAI.NotFoundError,
  404,
  "unknown model",
);
check(notFound.code === "model_not_found", "error code");
await expectError(
  client.chat.completions.create({ model, messages: "not a list" }),
  OpenAI.BadRequestError,
  400,
  "bad messages",
);

console.log("ALL OK");
