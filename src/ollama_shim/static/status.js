// The status page: poll /status.json every 2 s and redraw. Text only ever goes in through
// textContent: model names and error messages come from clients and backends.
"use strict";

const POLL_MS = 2000;

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function setText(id, value) {
  document.getElementById(id).textContent = String(value);
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement("td");
    if (cell instanceof Node) td.appendChild(cell); else td.textContent = String(cell);
    tr.appendChild(td);
  }
  return tr;
}

function modelsCell(models) {
  const cell = document.createElement("div");
  if (models.length === 0) cell.appendChild(el("span", "none listed", "muted"));
  for (const model of models) {
    const tag = el("span", model.name, model.loaded ? "model loaded" : "model");
    tag.dataset.loaded = String(model.loaded);
    cell.appendChild(tag);
  }
  return cell;
}

function drawBackends(backends) {
  const body = document.querySelector("#backends tbody");
  body.replaceChildren(...backends.map((b) => {
    const tr = row([b.root, b.kind, el("span", b.health, "health " + b.health), modelsCell(b.models),
      b.last_error ? el("span", b.last_error, "error-text") : el("span", "–", "muted")]);
    tr.dataset.backend = b.root;
    return tr;
  }));
}

function drawErrors(errors) {
  const body = document.querySelector("#errors tbody");
  if (errors.length === 0) {
    const empty = row([el("span", "none", "muted"), "", "", "", ""]);
    body.replaceChildren(empty);
    return;
  }
  body.replaceChildren(...errors.map((e) => row([
    e.time.replace("T", " ").replace(/\.\d+Z$/, ""),
    e.method + " " + e.path + " · " + e.request_id,
    e.status,
    el("span", e.kind + ": " + e.message, "error-text"),
    [e.model, e.backend].filter(Boolean).join(" @ ") || "–",
  ])));
}

function draw(s) {
  document.getElementById("problem").style.display = "none";
  setText("meta", "pid " + s.pid + " · up " + Math.round(s.uptime_seconds) + " s · Ollama API " + s.version);
  setText("in-flight", s.requests_in_flight);
  setText("streams", s.streams_in_flight);
  setText("tokens-per-second", s.tokens_per_second.toFixed(1));
  setText("rate-window", "last " + s.rate_window_seconds + " s");
  setText("tokens-out", s.tokens_out_total);
  setText("tokens-in", s.tokens_in_total);
  setText("requests", s.requests_total);
  drawBackends(s.backends);
  drawErrors(s.recent_errors);
}

function problem(text) {
  const box = document.getElementById("problem");
  box.textContent = text;
  box.style.display = "block";
}

async function poll() {
  try {
    const response = await fetch("/status.json", { cache: "no-store" });
    if (response.status === 401) {
      problem("This server needs its API key: open this page through something that sends " +
        "'Authorization: Bearer <key>' (see docs/deployment.md).");
    } else if (!response.ok) {
      problem("/status.json answered HTTP " + response.status);
    } else {
      draw(await response.json());
    }
  } catch (err) {
    problem("cannot reach the server: " + err);
  }
  setTimeout(poll, POLL_MS);
}

poll();
