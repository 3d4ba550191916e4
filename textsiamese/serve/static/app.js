// The search page: fills the index picker from /health, searches with /search, scores a pair with /score.
"use strict";

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

async function postJson(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const data = await response.json();
  if (!response.ok) throw new Error(data.error ? data.error.message : response.statusText);
  return data;
}

async function loadHealth() {
  const status = document.getElementById("status");
  try {
    const response = await fetch("/health");
    const health = await response.json();
    const picker = document.getElementById("index");
    picker.replaceChildren();
    for (const [name, info] of Object.entries(health.indexes || {})) {
      const option = element("option", "", `${name} (${info.rows} rows)`);
      option.value = name;
      picker.appendChild(option);
    }
    status.textContent = `${health.status} · model ${health.model.fingerprint.slice(0, 12)}` +
      (health.model.calibrated ? " · calibrated" : "");
  } catch (error) {
    status.textContent = `unreachable: ${error.message}`;
  }
}

function renderHits(hits) {
  const list = document.getElementById("hits");
  list.replaceChildren();
  for (const hit of hits) {
    const item = element("li", "hit");
    item.appendChild(element("span", "score", hit.score.toFixed(4)));
    item.appendChild(element("span", "hit-text", hit.text || ""));
    item.appendChild(element("span", "hit-id", ` [${hit.id}]`));
    const meta = element("div", "meta");
    const extra = hit.metadata || Object.fromEntries(
      Object.entries(hit).filter(([key]) => !["id", "score", "text"].includes(key)));
    for (const [key, value] of Object.entries(extra)) {
      meta.appendChild(element("span", "", `${key}: ${typeof value === "string" ? value : JSON.stringify(value)}`));
    }
    if (meta.childElementCount) item.appendChild(meta);
    list.appendChild(item);
  }
}

document.getElementById("search-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const message = document.getElementById("search-message");
  const query = document.getElementById("query").value.trim();
  if (!query) return;
  message.className = "muted";
  message.textContent = "searching…";
  try {
    const data = await postJson("/search", {
      query,
      k: Number(document.getElementById("k").value) || 5,
      index: document.getElementById("index").value || null,
    });
    renderHits(data.results[0].hits);
    const warning = data.truncation.warning ? ` (${data.truncation.warning})` : "";
    message.textContent = `${data.results[0].hits.length} hits from ${data.index}${warning}`;
  } catch (error) {
    message.className = "error";
    message.textContent = error.message;
  }
});

document.getElementById("score-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const out = document.getElementById("score-result");
  const a = document.getElementById("text-a").value;
  const b = document.getElementById("text-b").value;
  try {
    const data = await postJson("/score", { pairs: [[a, b]] });
    let text = `${data.metric}: ${data.scores[0].toFixed(4)}`;
    if (data.calibrated) {
      text += ` · P(same) ${data.probabilities[0].toFixed(3)} · ${data.same[0] ? "same" : "not same"}`;
    }
    out.className = "";
    out.textContent = text;
  } catch (error) {
    out.className = "error";
    out.textContent = error.message;
  }
});

loadHealth();
