// Drives a running shim with @langchain/ollama, one user flow per run, and prints one JSON line.
// Usage: node langchain_check.mjs HOST SCENARIO MODEL
// Scenarios: chat, stream, generate, structured, embed (real backend); tools (scripted upstream).
// A flow that throws prints {"error": message} and exits 0, so the caller asserts on it.
import { ChatOllama, Ollama, OllamaEmbeddings } from "@langchain/ollama";
import { HumanMessage, ToolMessage } from "@langchain/core/messages";
import { tool } from "@langchain/core/tools";
import { z } from "zod";
import { printScenario } from "./scenario.mjs";

const [baseUrl, scenario, model] = process.argv.slice(2);
const greedy = { temperature: 0, seed: 1 };

const getWeather = tool(async ({ city }) => `sunny in ${city}`, {
  name: "get_weather",
  description: "Get the current weather for a city.",
  schema: z.object({ city: z.string() }),
});

const scenarios = {
  async chat() {
    const answer = await new ChatOllama({ model, baseUrl, numPredict: 8, ...greedy }).invoke("Say hello.");
    return { text: answer.content, doneReason: answer.response_metadata.done_reason, usage: answer.usage_metadata };
  },
  async stream() {
    const chunks = [];
    for await (const chunk of await new ChatOllama({ model, baseUrl, numPredict: 8, ...greedy }).stream("Say hello.")) {
      chunks.push(chunk.content);
    }
    return { chunks };
  },
  async generate() {
    const llm = new Ollama({ model, baseUrl, numPredict: 8, ...greedy });
    const whole = await llm.invoke("Once upon a time");
    let streamed = "";
    for await (const piece of await llm.stream("Once upon a time")) streamed += piece;
    return { whole, streamed };
  },
  async structured() {
    const city = z.object({ name: z.string(), country: z.string() });
    const llm = new ChatOllama({ model, baseUrl, numPredict: 64, ...greedy });
    const object = await llm.withStructuredOutput(city, { method: "jsonSchema" }).invoke(
      "Name one city in France and its country.");
    return { object };
  },
  async embed() {
    const embedder = new OllamaEmbeddings({ model, baseUrl });
    const docs = await embedder.embedDocuments(["the cat sat", "on the mat"]);
    const query = await embedder.embedQuery("the cat sat");
    return { lengths: docs.map((v) => v.length), queryLength: query.length, differ: docs[0][0] !== docs[1][0] };
  },
  async tools() {
    const llm = new ChatOllama({ model, baseUrl, think: true }).bindTools([getWeather]);
    const history = [new HumanMessage("What is the weather in Paris?")];
    const first = await llm.invoke(history);
    const call = first.tool_calls[0];
    const result = await getWeather.invoke(call.args);
    history.push(first, new ToolMessage({ content: result, tool_call_id: call.id ?? "" }));
    const final = await llm.invoke(history);
    let streamedCalls = [];
    for await (const chunk of await llm.stream("What is the weather in Paris?")) {
      streamedCalls = streamedCalls.concat(chunk.tool_calls ?? []);
    }
    return {
      thinking: first.additional_kwargs.reasoning_content,
      calls: first.tool_calls.map((c) => ({ name: c.name, args: c.args })),
      result,
      final: final.content,
      streamedCalls: streamedCalls.map((c) => ({ name: c.name, args: c.args })),
    };
  },
};

await printScenario(scenarios, scenario);
