// genserve's web page: plain JavaScript over the public API (the same calls a client makes).
"use strict";

const $ = (id) => document.getElementById(id);
let current = null; // GET /models/{name} of the chosen model

function say(text) {
  const box = $("message");
  box.textContent = text || "";
  box.hidden = !text;
}

async function api(path, { body, accept } = {}) {
  const headers = {};
  const key = sessionStorage.getItem("genserve-key");
  if (key) headers["X-API-Key"] = key;
  if (accept) headers["Accept"] = accept;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const answer = await fetch(path, { method: body === undefined ? "GET" : "POST", headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (answer.status === 401) {
    $("key-form").hidden = false;
    throw new Error("this server needs an API key: enter it above");
  }
  if (!answer.ok) {
    let message = `${answer.status} ${answer.statusText}`;
    try { message = (await answer.json()).error.message; } catch (e) { /* not JSON */ }
    throw new Error(message);
  }
  return answer;
}

function cell(row, text, tag = "td") {
  const element = document.createElement(tag);
  element.textContent = text;
  row.appendChild(element);
  return element;
}

function fillTable(table, pairs, title) {
  table.innerHTML = "";
  const head = table.createTHead().insertRow();
  cell(head, title, "th");
  cell(head, "", "th");
  for (const [name, value] of pairs) {
    const row = table.insertRow();
    cell(row, name);
    cell(row, typeof value === "number" ? (Number.isInteger(value) ? value : value.toFixed(4)) : String(value));
  }
}

async function loadModels() {
  try {
    const { models } = await (await api("/models")).json();
    const byName = new Map();
    for (const m of models) {
      if (!byName.has(m.name)) byName.set(m.name, []);
      byName.get(m.name).push(m);
    }
    const body = $("models").tBodies[0];
    body.innerHTML = "";
    for (const [name, versions] of byName) {
      const row = body.insertRow();
      row.dataset.model = name;
      cell(row, name);
      cell(row, versions.map((v) => `${v.version}${v.state === "ready" ? "" : " (failed)"}`).join(", "));
      const ready = versions.filter((v) => v.state === "ready");
      cell(row, ready.length ? ready.map((v) => v.head + (v.conditional ? ", conditional" : "")).at(-1) : "nothing");
      row.addEventListener("click", () => showModel(name));
    }
    say("");
  } catch (e) {
    say(e.message);
  }
}

function defaultSummary(detail) {
  return detail.versions.find((v) => v.version === detail.default_version) || detail.versions.at(-1);
}

function fillLabels(select, field, labels) {
  select.innerHTML = "";
  field.hidden = !labels;
  for (const label of labels || []) {
    const option = document.createElement("option");
    option.textContent = label;
    select.appendChild(option);
  }
}

async function showModel(name) {
  try {
    current = await (await api(`/models/${encodeURIComponent(name)}`)).json();
  } catch (e) {
    say(e.message);
    return;
  }
  for (const row of $("models").tBodies[0].rows) row.classList.toggle("chosen", row.dataset.model === name);
  const summary = defaultSummary(current);
  $("model-panel").hidden = false;
  $("model-title").textContent = `${name}@${current.default_version ?? "?"}`;
  $("model-default").textContent = `serves by default: version ${current.default_version} (${current.default_reason})`;
  fillTable($("metrics"), Object.entries(current.metrics || {}), "metric (test split)");
  const quality = Object.entries(current.quality || {}).filter(([, v]) => typeof v !== "object");
  fillTable($("quality"), quality, quality.length ? "quality of generated rows" : "no quality report");
  $("warnings").innerHTML = "";
  for (const warning of current.warnings || []) cell($("warnings"), warning, "li");
  fillLabels($("label"), $("label-field"), summary.labels);
  fillLabels($("band-label"), $("band-label-field"), summary.labels);
  $("band-hint").textContent = `Columns: ${(summary.columns || current.feature_names || []).join(", ")}`;
  // POST /quantiles refuses a head without spread (Bernoulli): no form to fill in for nothing
  $("bands-panel").hidden = !summary.bands;
  $("no-bands").hidden = !!summary.bands;
  $("no-bands").textContent = summary.bands ? "" : `None for this model: its ${summary.head || "unknown"} head predicts a mean per feature and no spread.`;
  $("download").hidden = !!summary.image_shape;
  $("samples").innerHTML = "";
  $("bands").innerHTML = "";
  $("outside").textContent = "";
  await showFigures(name);
}

async function showFigures(name) {
  const box = $("figures");
  box.innerHTML = "";
  for (const file of ["loss.svg", "columns.svg"]) {
    try {
      const blob = await (await api(`/models/${encodeURIComponent(name)}/files/${file}`)).blob();
      const image = document.createElement("img");
      image.src = URL.createObjectURL(blob);
      image.alt = file;
      box.appendChild(image);
    } catch (e) { /* older versions have no figures */ }
  }
  if (!box.children.length) box.textContent = "no figures for this version";
}

function request() {
  const body = { model: current.name, n: Number($("n").value) || 1, seed: Number($("seed").value) };
  if (!$("label-field").hidden) body.label = $("label").value;
  if ($("mode").value) body.mode = $("mode").value;
  return body;
}

async function generate(event) {
  event.preventDefault();
  const box = $("samples");
  box.innerHTML = "";
  const summary = defaultSummary(current);
  try {
    if (summary.image_shape) {
      const blob = await (await api("/generate", { body: request(), accept: "image/png" })).blob();
      const image = document.createElement("img");
      image.id = "sample-grid";
      image.alt = "generated samples";
      image.src = URL.createObjectURL(blob);
      box.appendChild(image);
    } else {
      showRows(await (await api("/generate", { body: request() })).json());
    }
    say("");
  } catch (e) {
    say(e.message);
  }
}

function showRows(answer) {
  const columns = answer.columns || current.feature_names;
  const rows = answer.samples;
  const table = document.createElement("table");
  table.id = "sample-table";
  const head = table.createTHead().insertRow();
  for (const name of columns) cell(head, name, "th");
  const body = table.createTBody();
  for (const values of rows.slice(0, 50)) {
    const row = body.insertRow();
    for (const value of values) cell(row, value === null ? "" : typeof value === "number" ? +value.toFixed(4) : value);
  }
  const histograms = document.createElement("div");
  histograms.className = "histograms";
  const schema = new Map((current.columns || []).map((c) => [c.name, c]));
  columns.forEach((name, i) => histograms.appendChild(histogram(name, rows.map((r) => r[i]), schema.get(name))));
  $("samples").append(table, histograms);
}

// A column's generated values as a small SVG histogram; for a numeric column with a quantile
// encoding, the training split's distribution (from its stored quantiles) as a line over it.
function histogram(name, values, column) {
  const present = values.filter((v) => v !== null);
  const numeric = present.length && present.every((v) => typeof v === "number");
  let labels, shares, reference = null;
  if (numeric) {
    const lo = column && column.min !== undefined ? column.min : Math.min(...present);
    const hi = column && column.max !== undefined ? column.max : Math.max(...present);
    const bins = 12, width = (hi - lo) || 1;
    const edges = Array.from({ length: bins + 1 }, (_, i) => lo + (width * i) / bins);
    shares = new Array(bins).fill(0);
    for (const v of present) shares[Math.min(bins - 1, Math.max(0, Math.floor(((v - lo) / width) * bins)))] += 1 / present.length;
    labels = [String(+lo.toPrecision(4)), String(+hi.toPrecision(4))];
    if (column && column.knots && column.scores) {
      const cdf = (x) => normalCdf(interpolate(x, column.knots, column.scores));
      reference = shares.map((_, i) => cdf(edges[i + 1]) - cdf(edges[i]));
    }
  } else {
    const counts = new Map();
    for (const v of present) counts.set(String(v), (counts.get(String(v)) || 0) + 1);
    labels = [...counts.keys()].slice(0, 12);
    shares = labels.map((k) => counts.get(k) / present.length);
  }
  const w = 200, h = 90, peak = Math.max(...shares, ...(reference || []), 1e-9), slot = w / shares.length;
  let svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h + 34}" font-size="10" font-family="sans-serif">`;
  svg += `<text x="0" y="10" font-weight="bold"></text>`;
  shares.forEach((s, i) => {
    const bar = (s / peak) * h;
    svg += `<rect x="${i * slot + 1}" y="${14 + h - bar}" width="${slot - 2}" height="${bar}" fill="#ff7f0e"/>`;
  });
  if (reference) {
    const points = reference.map((s, i) => `${(i + 0.5) * slot},${14 + h - (s / peak) * h}`).join(" ");
    svg += `<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="${points}"/>`;
  }
  svg += `<text x="0" y="${h + 26}"></text><text x="${w}" y="${h + 26}" text-anchor="end"></text></svg>`;
  const holder = document.createElement("div");
  holder.className = "histogram";
  holder.innerHTML = svg;
  const texts = holder.querySelectorAll("text");
  texts[0].textContent = name + (reference ? " (line: training data)" : "");
  texts[1].textContent = numeric ? labels[0] : labels.join(" · ").slice(0, 40);
  texts[2].textContent = numeric ? labels[1] : "";
  return holder;
}

function interpolate(x, xs, ys) {
  if (x <= xs[0]) return ys[0];
  if (x >= xs[xs.length - 1]) return ys[ys.length - 1];
  let i = 1;
  while (xs[i] < x) i++;
  const span = xs[i] - xs[i - 1];
  return span > 0 ? ys[i - 1] + ((x - xs[i - 1]) / span) * (ys[i] - ys[i - 1]) : ys[i];
}

function normalCdf(z) {
  // Abramowitz and Stegun 7.1.26, |error| < 1.5e-7
  const t = 1 / (1 + (0.3275911 * Math.abs(z)) / Math.SQRT2);
  const y = 1 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp((-z * z) / 2);
  return z >= 0 ? (1 + y) / 2 : (1 - y) / 2;
}

async function download() {
  try {
    const blob = await (await api("/generate", { body: request(), accept: "text/csv" })).blob();
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = `${current.name}-generated.csv`;
    link.click();
  } catch (e) {
    say(e.message);
  }
}

function parseRow(text) {
  const line = text.trim();
  try {
    return JSON.parse(line);
  } catch (e) {
    return line.split(",").map((v) => {
      const value = v.trim();
      if (value === "") return null;
      return Number.isNaN(Number(value)) ? value : Number(value);
    });
  }
}

async function bands(event) {
  event.preventDefault();
  const body = { model: current.name, inputs: [parseRow($("row").value)] };
  if (!$("band-label-field").hidden) body.labels = [$("band-label").value];
  try {
    const answer = await api("/quantiles", { body, accept: "image/svg+xml" });
    $("bands").innerHTML = await answer.text(); // the server's own SVG, names escaped there
    const outside = (answer.headers.get("X-Outside") || "").split(",").filter(Boolean).map(decodeURIComponent);
    $("outside").textContent = outside.length ? `outside the outer band: ${outside.join(", ")}` : "every feature inside its outer band";
    say("");
  } catch (e) {
    say(e.message);
  }
}

async function readFile() {
  const file = $("row-file").files[0];
  if (!file) return;
  const lines = (await file.text()).split(/\r?\n/).filter((l) => l.trim());
  $("row").value = lines.at(-1) || ""; // a CSV's last row (after its header), or the JSON
}

document.addEventListener("DOMContentLoaded", () => {
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem("genserve-key", $("api-key").value);
    loadModels();
  });
  $("generate-form").addEventListener("submit", generate);
  $("download").addEventListener("click", download);
  $("bands-form").addEventListener("submit", bands);
  $("row-file").addEventListener("change", readFile);
  loadModels();
});
