// Drives a running shim with the Vercel AI SDK (`ai`) and `ollama-ai-provider-v2`, one user flow
// per run, and prints one JSON line.
// Usage: node ai_sdk_check.mjs HOST SCENARIO MODEL
// Scenarios: chat, stream, completion, structured, embed (real backend); tools, streamTools
// (scripted upstream). A flow that throws prints {"error": message} and exits 0.
import { embedMany, generateObject, generateText, stepCountIs, streamText, tool } from "ai";
import { createOllama } from "ollama-ai-provider-v2";
import { z } from "zod";
import { printScenario } from "./scenario.mjs";

const [host, scenario, model] = process.argv.slice(2);
const ollama = createOllama({ baseURL: `${host}/api` });
// The provider sends the SDK's own maxOutputTokens and temperature where Ollama does not read
// them; its users pass Ollama options through providerOptions instead.
const short = (n) => ({ ollama: { options: { num_predict: n, temperature: 0, seed: 1 } } });

const weather = {
  get_weather: tool({
    description: "Get the current weather for a city.",
    inputSchema: z.object({ city: z.string() }),
    execute: async ({ city }) => `sunny in ${city}`,
  }),
};
const thinking = { ollama: { think: true } };

const scenarios = {
  async chat() {
    const { text, finishReason, usage } = await generateText({
      model: ollama(model), prompt: "Say hello.", providerOptions: short(8) });
    return { text, finishReason, outputTokens: usage.outputTokens };
  },
  async stream() {
    const result = streamText({ model: ollama(model), prompt: "Say hello.", providerOptions: short(8) });
    const chunks = [];
    for await (const piece of result.textStream) chunks.push(piece);
    return { chunks, finishReason: await result.finishReason };
  },
  async completion() {
    // The completion model sends no Ollama options at all: a question with a one-word answer.
    const { text, finishReason } = await generateText({
      model: ollama.completion(model), prompt: "Answer with one word, yes or no: is the sky blue?" });
    return { text, finishReason };
  },
  async structured() {
    const { object } = await generateObject({
      model: ollama(model), providerOptions: short(64),
      schema: z.object({ name: z.string(), country: z.string() }),
      prompt: "Name one city in France and its country.",
    });
    return { object };
  },
  async embed() {
    const { embeddings } = await embedMany({ model: ollama.embedding(model), values: ["the cat sat", "on the mat"] });
    return { lengths: embeddings.map((v) => v.length), differ: embeddings[0][0] !== embeddings[1][0] };
  },
  async tools() {
    const result = await generateText({
      model: ollama(model), tools: weather, stopWhen: stepCountIs(3), providerOptions: thinking,
      prompt: "What is the weather in Paris?",
    });
    return {
      steps: result.steps.map((s) => ({
        reasoning: s.reasoningText,
        calls: s.toolCalls.map((c) => ({ name: c.toolName, input: c.input })),
        results: s.toolResults.map((r) => r.output),
        text: s.text,
      })),
      text: result.text,
    };
  },
  async streamTools() {
    const result = streamText({
      model: ollama(model), tools: weather, stopWhen: stepCountIs(3), providerOptions: thinking,
      prompt: "What is the weather in Paris?",
    });
    const kinds = new Set();
    let reasoning = "";
    const calls = [];
    for await (const part of result.fullStream) {
      kinds.add(part.type);
      if (part.type === "reasoning-delta") reasoning += part.text;
      if (part.type === "tool-call") calls.push({ name: part.toolName, input: part.input });
      if (part.type === "error") throw part.error;
    }
    return { kinds: [...kinds].sort(), reasoning, calls, text: await result.text };
  },
};

await printScenario(scenarios, scenario);
