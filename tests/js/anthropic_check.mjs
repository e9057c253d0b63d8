// Drives a running shim's /v1/messages with the official Anthropic TypeScript SDK
// (`@anthropic-ai/sdk`), one user flow per run, and prints one JSON line.
// Usage: node anthropic_check.mjs HOST SCENARIO MODEL [KEY]
// Scenarios: create, stream, claudeCode, countTokens, missing (real backend); auth (a shim run
// with --api-key KEY); tools, thinking (scripted upstream). A flow that throws prints
// {"error": message} and exits 0, so the caller asserts on it.
import Anthropic from "@anthropic-ai/sdk";
import { printScenario } from "./scenario.mjs";

const [baseURL, scenario, model, key] = process.argv.slice(2);
// Explicit credentials, so nothing is read from the environment or a local config file.
const connect = (auth = { apiKey: "unused", authToken: null }) =>
  new Anthropic({ baseURL, maxRetries: 0, timeout: 120_000, ...auth });
const client = connect();
const USER = { role: "user", content: "Say hello." };
// The tiny real models' answers are kept short and greedy.
const SHORT = { max_tokens: 8, temperature: 0, stop_sequences: ["\n"] };
const WEATHER = {
  name: "get_weather",
  description: "The weather in a city.",
  input_schema: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
};
const THINKING = { type: "enabled", budget_tokens: 1024 };

const text = (message) => message.content.filter((b) => b.type === "text").map((b) => b.text).join("");
const summary = (message) => ({
  id: message.id,
  type: message.type,
  role: message.role,
  model: message.model,
  blocks: message.content.map((b) => b.type),
  text: text(message),
  stopReason: message.stop_reason,
  usage: { input: message.usage.input_tokens, output: message.usage.output_tokens },
});
const toolUse = (message) => {
  const call = message.content.find((b) => b.type === "tool_use");
  return call && { id: call.id, name: call.name, input: call.input };
};
const thought = (message) => message.content.filter((b) => b.type === "thinking").map((b) => b.thinking).join("");

// The SDK's error class for a failed call, with what it parsed of the answer.
async function failure(call) {
  try {
    await call();
    return { thrown: null };
  } catch (err) {
    return {
      thrown: err.constructor.name,
      notFound: err instanceof Anthropic.NotFoundError,
      authentication: err instanceof Anthropic.AuthenticationError,
      status: err.status,
      type: err.type,
      body: err.error,
    };
  }
}

// One streamed message through the SDK's event helpers.
async function streamed(stream) {
  const events = [];
  const texts = [];
  const thoughts = [];
  const inputJson = [];
  stream.on("streamEvent", (event) => events.push(event.type));
  stream.on("text", (delta) => texts.push(delta));
  stream.on("thinking", (delta) => thoughts.push(delta));
  stream.on("inputJson", (delta) => inputJson.push(delta));
  const final = await stream.finalMessage();
  return { events, texts, thoughts, inputJson, final };
}

const scenarios = {
  async create() {
    return summary(await client.messages.create({ model, messages: [USER], ...SHORT }));
  },
  async stream() {
    const stream = client.messages.stream({
      model, ...SHORT, system: "You are terse.",
      messages: [USER, { role: "assistant", content: "Hello." }, { role: "user", content: "Again." }],
    });
    const run = await streamed(stream);
    return { events: run.events, texts: run.texts, finalText: await stream.finalText(), final: summary(run.final) };
  },
  async claudeCode() {
    // As Claude Code calls it through Ollama: a bearer token, the beta endpoint, its headers,
    // system blocks with cache_control and the billing line, tools, max_tokens far above the
    // context, a streamed answer; then a token count of the same request. (Claude Code sends no
    // stop sequences: these only keep the tiny model's answer short.)
    const cc = connect({ apiKey: null, authToken: "ollama" });
    const request = {
      model,
      system: [
        { type: "text", text: "x-anthropic-billing-header: cc_version=2.1.0; cc_entrypoint=cli; cch=00000;" },
        { type: "text", text: "You are a coding agent.", cache_control: { type: "ephemeral", ttl: "1h" } },
      ],
      messages: [{ role: "user", content: [
        { type: "text", text: "<system-reminder>Be careful.</system-reminder>" },
        { type: "text", text: "Say hello.", cache_control: { type: "ephemeral" } },
      ] }],
      tools: [WEATHER],
      betas: ["claude-code-20250219", "interleaved-thinking-2025-05-14", "fine-grained-tool-streaming-2025-05-14"],
    };
    const headers = { "x-app": "cli", "anthropic-dangerous-direct-browser-access": "true" };
    const run = await streamed(cc.beta.messages.stream({
      ...request, max_tokens: 32000, temperature: 0, stop_sequences: ["\n", ".", "!"],
      metadata: { user_id: "user_abc_account_x_session_y" },
    }, { headers }));
    const count = await cc.beta.messages.countTokens(request, { headers });
    return { events: run.events, final: summary(run.final), countTokens: count.input_tokens };
  },
  async countTokens() {
    const short = await client.messages.countTokens({ model, messages: [USER] });
    const longer = await client.messages.countTokens({
      model, messages: [USER, { role: "assistant", content: "Hello there, how are you?" }] });
    return { short: short.input_tokens, longer: longer.input_tokens };
  },
  async missing() {
    const ask = { model: "no-such-model", messages: [USER], ...SHORT };
    return {
      create: await failure(() => client.messages.create(ask)),
      stream: await failure(() => client.messages.stream(ask).finalMessage()),
      countTokens: await failure(() => client.messages.countTokens({ model: "no-such-model", messages: [USER] })),
    };
  },
  async auth() {
    // SDK 1.x sends an `apiKey` as `Authorization: Bearer`, as it does an `authToken`; Claude
    // Code and the 0.x SDKs send a key as `x-api-key`, which the SDK sends when set as a header.
    const xApiKey = (value) => ({ apiKey: null, authToken: null, defaultHeaders: { "x-api-key": value } });
    const bearer = (value) => ({ apiKey: value, authToken: null });
    const count = (auth) => async () =>
      (await connect(auth).messages.countTokens({ model, messages: [USER] })).input_tokens;
    const create = (auth) => () => connect(auth).messages.create({ model, messages: [USER], ...SHORT });
    return {
      wrong: {
        xApiKey: await failure(create(xApiKey(`${key}-not`))),
        bearer: await failure(create(bearer(`${key}-not`))),
        countTokens: await failure(count(xApiKey(`${key}-not`))),
      },
      right: { xApiKey: await count(xApiKey(key))(), bearer: await count(bearer(key))() },
    };
  },
  async tools() {
    // Thinking on, as Claude Code asks; the assistant turn (thinking and tool_use blocks) goes
    // back as the SDK returned it, followed by the tool_result.
    const ask = [{ role: "user", content: "What is the weather in Paris?" }];
    const request = { model, max_tokens: 256, tools: [WEATHER], thinking: THINKING };
    const first = await client.messages.create({ ...request, messages: ask });
    const call = toolUse(first);
    const result = `sunny in ${call.input.city}`;
    const history = [...ask, { role: "assistant", content: first.content },
      { role: "user", content: [{ type: "tool_result", tool_use_id: call.id, content: result }] }];
    const final = await client.messages.create({ ...request, messages: history });
    const run = await streamed(client.messages.stream({ ...request, messages: ask }));
    return {
      first: summary(first), call, thinking: thought(first), result, final: summary(final),
      streamed: { events: run.events, inputJson: run.inputJson, thoughts: run.thoughts,
        final: summary(run.final), call: toolUse(run.final) },
    };
  },
  async thinking() {
    const request = { model, max_tokens: 256, thinking: THINKING, messages: [{ role: "user", content: "2+2?" }] };
    const whole = await client.messages.create(request);
    const run = await streamed(client.messages.stream(request));
    const signatures = (m) => m.content.filter((b) => b.type === "thinking").map((b) => b.signature);
    return {
      whole: { ...summary(whole), thinking: thought(whole), signatures: signatures(whole) },
      streamed: { thoughts: run.thoughts, texts: run.texts, final: { ...summary(run.final),
        thinking: thought(run.final), signatures: signatures(run.final) } },
    };
  },
};

await printScenario(scenarios, scenario);
