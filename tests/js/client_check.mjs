// Drives a running shim with the official `ollama` npm client and prints one JSON summary line.
// Usage: node client_check.mjs HOST CHAT_MODEL EMBED_MODEL
import { Ollama } from "ollama";

const [host, chatModel, embedModel] = process.argv.slice(2);
const client = new Ollama({ host });
const out = {};

out.version = (await client.version()).version;
out.models = (await client.list()).models.map((m) => m.model);
const shown = await client.show({ model: chatModel });
out.capabilities = shown.capabilities;
out.modelInfoKeys = Object.keys(shown.model_info);

const messages = [{ role: "user", content: "hi" }];
let streamed = "";
let last = null;
for await (const part of await client.chat({ model: chatModel, messages, stream: true })) {
  streamed += part.message.content;
  last = part;
}
out.chatStream = { text: streamed, done: last.done, doneReason: last.done_reason, evalCount: last.eval_count };

const whole = await client.chat({ model: chatModel, messages, stream: false });
out.chat = { text: whole.message.content, done: whole.done };

let generated = "";
for await (const part of await client.generate({ model: chatModel, prompt: "p", stream: true })) {
  generated += part.response;
}
out.generate = generated;

out.embedLengths = (await client.embed({ model: embedModel, input: ["a", "b"] })).embeddings.map((e) => e.length);

try {
  await client.chat({ model: "no-such-model", messages });
  out.missing = "no error";
} catch (err) {
  out.missing = { status: err.status_code, error: err.error };
}
console.log(JSON.stringify(out));
