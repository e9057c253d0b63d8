// The `ollama create` / `cp` / `rm` / `pull` sequence with the official `ollama` npm client against a
// running shim; prints one JSON summary line.
// Usage: node manage_check.mjs HOST BASE_MODEL
import { Ollama } from "ollama";

const [host, base] = process.argv.slice(2);
const client = new Ollama({ host });
const out = {};

const created = [];
for await (const part of await client.create({
  model: "mario", from: base, system: "You are Mario.", parameters: { temperature: 0.25 }, stream: true,
})) {
  created.push(part.status);
}
out.createStatuses = created;
await client.copy({ source: "mario", destination: "luigi" });
const custom = (models) => models.filter((m) => m.details.parent_model);  // the backend's own have none
out.listed = custom((await client.list()).models).map((m) => [m.model, m.details.parent_model]);
const shown = await client.show({ model: "luigi" });
out.shownSystem = shown.system;
out.modelfileHasFrom = shown.modelfile.includes(`FROM `);
const answer = await client.chat({ model: "luigi", messages: [{ role: "user", content: "hi" }], stream: false });
out.chatModel = answer.model;
await client.delete({ model: "mario" });
await client.delete({ model: "luigi" });
out.afterDelete = custom((await client.list()).models).map((m) => m.model);
out.pull = (await client.pull({ model: base, stream: false })).status;
console.log(JSON.stringify(out));
