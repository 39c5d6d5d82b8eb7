// Drives a running InstaGen's Responses API with the official `openai` npm package (run by
// tests/api/agent_sdks.rs), one phase per run (the first argument) so that the test can
// script the mock upstream between phases:
//   basic: a plain response, a raw event stream, the `responses.stream` helper and the
//          errors of a stateless server (3 upstream requests, default script);
//   tools: a function tool loop, stateless (2 upstream requests; the test scripts the
//          first to call `get_weather`).
import OpenAI from "openai";

const baseURL = process.env.INSTAGEN_BASE_URL;
const apiKey = process.env.INSTAGEN_KEY;
const model = process.env.INSTAGEN_MODEL;
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
const REPLY = "Hello from the mock upstream.";

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

async function basic() {
  const r = await client.responses.create({ model, input: "one two three" });
  check(r.output_text === REPLY, `plain output_text: ${JSON.stringify(r.output_text)}`);
  check(r.status === "completed", `plain status: ${r.status}`);
  check(r.usage.input_tokens > 0 && r.usage.output_tokens === 5, `plain usage: ${JSON.stringify(r.usage)}`);

  let text = "";
  const types = [];
  let completed = null;
  const stream = await client.responses.create({ model, input: "hi there", stream: true });
  for await (const event of stream) {
    types.push(event.type);
    if (event.type === "response.output_text.delta") text += event.delta;
    if (event.type === "response.completed") completed = event.response;
  }
  check(text === REPLY, `stream text: ${JSON.stringify(text)}`);
  check(types[0] === "response.created" && types.at(-1) === "response.completed", "stream framing");
  check(
    completed !== null && completed.status === "completed" && completed.usage.output_tokens === 5,
    `response.completed usage: ${JSON.stringify(completed?.usage)}`,
  );

  let helperText = "";
  const helper = client.responses.stream({ model, input: "stream helper" });
  helper.on("response.output_text.delta", (e) => {
    helperText += e.delta;
  });
  const final = await helper.finalResponse();
  check(helperText === REPLY, `responses.stream deltas: ${JSON.stringify(helperText)}`);
  check(final.output_text === REPLY && final.status === "completed", "finalResponse");

  const stateful = await expectError(
    client.responses.create({ model, input: "x", previous_response_id: "resp_x" }),
    OpenAI.BadRequestError,
    400,
    "previous_response_id",
  );
  check(stateful.param === "previous_response_id", `error param: ${stateful.param}`);
  await expectError(client.responses.retrieve("resp_x"), OpenAI.NotFoundError, 404, "responses.retrieve");
  await expectError(
    new OpenAI({ baseURL, apiKey: "ig-wrong", maxRetries: 0 }).responses.create({ model, input: "x" }),
    OpenAI.AuthenticationError,
    401,
    "bad key",
  );
}

const tools = [
  {
    type: "function",
    name: "get_weather",
    description: "The weather in a city",
    parameters: {
      type: "object",
      properties: { city: { type: "string" } },
      required: ["city"],
      additionalProperties: false,
    },
    strict: true,
  },
];

async function toolLoop() {
  const input = [{ role: "user", content: "What is the weather in Oslo?" }];
  const r = await client.responses.create({ model, input, tools });
  const calls = r.output.filter((o) => o.type === "function_call");
  check(calls.length === 1, `one function_call: ${r.output.map((o) => o.type)}`);
  const call = calls[0];
  check(
    call.name === "get_weather" && JSON.parse(call.arguments).city === "Oslo" && call.call_id,
    `function_call: ${call.name} ${call.arguments}`,
  );
  input.push(...r.output);
  input.push({ type: "function_call_output", call_id: call.call_id, output: JSON.stringify({ temperature_c: 3 }) });
  let text = "";
  const stream = await client.responses.create({ model, input, tools, stream: true });
  for await (const event of stream) {
    if (event.type === "response.output_text.delta") text += event.delta;
  }
  check(text === REPLY, `answer after the tool output: ${JSON.stringify(text)}`);
}

const phases = { basic, tools: toolLoop };
await phases[process.argv[2]]();
console.log("ALL OK");
