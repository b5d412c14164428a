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
  $("conditions-field").hidden = !current.columns;
  $("conditions").value = "";
  $("rules").innerHTML = "";
  $("rules-panel").hidden = !current.rules;
  for (const rule of current.rules || []) {
    cell($("rules"), `${rule.text} (${rule.declared ? "declared" : "found"}; ${rule.support} training rows)`, "li");
  }
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
  const conditions = $("conditions").value.trim();
  if (conditions && !$("conditions-field").hidden) {
    try {
      body.conditions = JSON.parse(conditions);
    } catch (e) {
      throw new Error(`conditions: not JSON (${e.message}); write them as {"column": value or {"min": a, "max": b}}`);
    }
  }
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
      const body = request();
      showRows(await (await api("/generate", { body })).json(), body.label);
    }
    say("");
  } catch (e) {
    say(e.message);
  }
}

function showRows(answer, label) {
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
  const training = trainingRows(label);
  columns.forEach((name, i) => {
    const column = schema.get(name);
    if (schema.size && !column) return; // the label column: the label asked for, or the mix drawn
    const temporal = column && TEMPORAL[column.kind];
    const values = rows.map((r) => (temporal && r[i] !== null ? stampSeconds(r[i], column) : r[i]));
    histograms.appendChild(histogram(name, values, column, training.columns[name], training.caption, axisSample(name)));
  });
  $("samples").append(table, histograms);
}

// The training rows the histograms draw generated rows against, per column: the rows of the label asked
// for (all rows for an unconditional model). A version made before these references has only its
// numeric columns' quantile encodings, and they describe the training rows of all labels.
function trainingRows(label) {
  const labels = defaultSummary(current).labels;
  if (current.reference) {
    const k = labels ? labels.indexOf(label) : 0;
    return { columns: current.reference[k].columns, caption: labels ? `training data, label ${label}` : "training data" };
  }
  const columns = {};
  for (const c of current.columns || []) {
    if (c.knots && c.scores) columns[c.name] = { missing: c.missing_rate || 0, quantiles: c.knots, levels: c.scores.map(normalCdf) };
  }
  return { columns, caption: labels ? "training data, all labels" : "training data" };
}

// What a numeric column's axis is chosen on: its training values over all labels (each label's quantiles),
// so that every label's histogram of a column has the same axis; none known: the generated values.
function axisSample(name) {
  if (current.reference) return current.reference.flatMap((r) => (r.columns[name] && r.columns[name].quantiles) || []);
  const column = (current.columns || []).find((c) => c.name === name);
  return (column && column.knots) || [];
}

// Dates, timestamps and times of day: the API answers them as text in the column's format (strftime codes);
// the histograms draw them on a time axis, as seconds (since 1970, or since midnight for a time of day).
const TEMPORAL = { date: "date", datetime: "datetime", time: "time" };
const FIELDS = { Y: "(\\d{4})", y: "(\\d{2})", m: "(\\d{1,2})", d: "(\\d{1,2})", H: "(\\d{1,2})", I: "(\\d{1,2})", M: "(\\d{2})", S: "(\\d{2})", f: "(\\d+)", p: "(AM|PM|am|pm)", b: "([A-Za-z]{3})", B: "([A-Za-z]+)", z: "(Z|[+-]\\d\\d:?\\d\\d)?", j: "(\\d{3})" };
const MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];

function stampSeconds(text, column) {
  const codes = [];
  const pattern = column.format.replace(/%(.)|([.*+?^${}()|[\]\\])/g, (all, code, special) => {
    if (special) return "\\" + special;
    codes.push(code);
    return FIELDS[code] || ".*?";
  });
  const found = new RegExp(`^${pattern}$`).exec(String(text).trim());
  if (!found) return null;
  const at = { Y: 1970, m: 1, d: 1, H: 0, M: 0, S: 0 };
  codes.forEach((code, k) => {
    const v = found[k + 1];
    if (v === undefined) return;
    if (code === "y") at.Y = 2000 + +v;
    else if (code === "b" || code === "B") at.m = MONTHS.indexOf(v.slice(0, 3).toLowerCase()) + 1;
    else if (code === "p") at.pm = v.toLowerCase() === "pm";
    else if (code === "I") at.H = +v % 12;
    else if (code in at) at[code] = +v;
  });
  if (at.pm) at.H += 12;
  const seconds = Date.UTC(at.Y, at.m - 1, at.d, at.H, at.M, at.S) / 1000;
  return column.kind === "time" ? seconds % 86400 : seconds;
}

function stampText(seconds, kind) {
  const iso = new Date(seconds * 1000).toISOString();
  return kind === "time" ? iso.slice(11, 16) : kind === "date" ? iso.slice(0, 10) : iso.slice(0, 16).replace("T", " ");
}

const BINS = 12;
const MADE = "#ff7f0e", REAL = "#1f77b4";

// A column's generated values as a small SVG histogram, with the training rows' shares (`reference`:
// the share missing, and the values' quantiles or each category's share) as a line over it. Shares are
// of all rows: a column with gaps has a dashed "missing" bar; a log axis has zero in a bar of its own.
function histogram(name, values, column, reference, caption, sample) {
  const present = values.filter((v) => v !== null);
  const numeric = column ? column.min !== undefined : present.every((v) => typeof v === "number");
  const drawn = numeric ? numericSlots(present, values.length, column, reference, sample) : categorySlots(present, values.length, column, reference);
  const slots = drawn.slots;
  const gaps = present.length < values.length || (column && column.missing_rate > 0) || (reference && reference.missing > 0);
  if (gaps) slots.push({ kind: "missing", label: "missing", made: (values.length - present.length) / values.length, real: reference ? reference.missing || 0 : null });
  const notes = [...drawn.notes, ...(gaps ? ["dashed: missing"] : [])];

  const w = 220, h = 90, top = 16, slot = w / Math.max(1, slots.length);
  const peak = Math.max(1e-9, ...slots.map((s) => Math.max(s.made, s.real || 0)));
  const y = (share) => top + h - (share / peak) * h;
  const holder = document.createElement("div");
  holder.className = "histogram";
  holder.dataset.column = name;
  holder.dataset.scale = drawn.scale;
  const svg = svgElement(holder, "svg", { width: w, height: top + h + 34, "font-size": 10, "font-family": "sans-serif" });
  const real = reference && slots.some((s) => s.real !== null);
  svgElement(svg, "text", { x: 0, y: 10, "font-weight": "bold" }, name + (real ? ` (line: ${caption})` : ""));
  slots.forEach((s, i) => {
    const group = svgElement(svg, "g", { class: `slot ${s.kind}` });
    const what = s.real === null ? "" : `, training data ${percent(s.real)}`;
    svgElement(group, "title", {}, `${s.label}: generated ${percent(s.made)}${what}`);
    const bar = { x: i * slot + 1, y: y(s.made), width: Math.max(1, slot - 2), height: top + h - y(s.made) };
    svgElement(group, "rect", s.kind === "missing" ? { ...bar, fill: "#d9d9d9", stroke: "#555", "stroke-dasharray": "3 2" } : { ...bar, fill: MADE });
    if (s.real !== null && s.kind !== "bin") svgElement(group, "line", { x1: i * slot, x2: (i + 1) * slot, y1: y(s.real), y2: y(s.real), stroke: REAL, "stroke-width": 2 });
  });
  const bins = slots.map((s, i) => [s, i]).filter(([s]) => s.kind === "bin" && s.real !== null);
  if (bins.length) svgElement(svg, "polyline", { fill: "none", stroke: REAL, "stroke-width": 2, points: bins.map(([s, i]) => `${(i + 0.5) * slot},${y(s.real)}`).join(" ") });
  const first = slots.findIndex((s) => s.kind === "bin"), last = slots.findLastIndex((s) => s.kind === "bin");
  if (slots[0] && slots[0].kind === "zero") svgElement(svg, "text", { x: slot / 2, y: top + h + 12, "text-anchor": "middle" }, "0");
  if (first >= 0) {
    svgElement(svg, "text", { x: first * slot, y: top + h + 12 }, drawn.ends[0]);
    svgElement(svg, "text", { x: (last + 1) * slot, y: top + h + 12, "text-anchor": "end" }, drawn.ends[1]);
  } else {
    svgElement(svg, "text", { x: 0, y: top + h + 12 }, drawn.ends.join(" · ").slice(0, 40));
  }
  svgElement(svg, "text", { x: 0, y: top + h + 26, class: "axis-note" }, notes.join("; "));
  return holder;
}

function svgElement(parent, tag, attributes, text) {
  const element = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  if (text !== undefined) element.textContent = text;
  parent.appendChild(element);
  return element;
}

function percent(share) {
  return `${(100 * share).toFixed(1)}%`;
}

function short(value) {
  return String(+value.toPrecision(3));
}

// A category column: a bar per category (the schema's, else those seen), at most BINS of them.
function categorySlots(present, total, column, reference) {
  const shares = (reference && reference.shares) || null;
  const keys = column && column.categories ? column.categories.map(String) : [...new Set([...present.map(String), ...Object.keys(shares || {})])];
  const counts = new Map();
  for (const v of present) counts.set(String(v), (counts.get(String(v)) || 0) + 1);
  const slots = keys.slice(0, BINS).map((k) => ({ kind: "category", label: k, made: (counts.get(k) || 0) / total, real: shares ? shares[k] || 0 : null }));
  const notes = keys.length > BINS ? [`first ${BINS} of ${keys.length} categories`] : [];
  return { slots, scale: "categories", ends: keys.slice(0, BINS), notes };
}

// A numeric column: BINS bins between the lowest and highest value known (the column's bounds, the
// training values, the generated ones), on the axis `numericAxis` chooses from `sample`.
function numericSlots(present, total, column, reference, sample) {
  const known = [...present, ...sample, ...(column ? [column.min, column.max] : [])];
  if (!known.length) return { slots: [], scale: "linear", ends: ["", ""], notes: [] };
  const lo = Math.min(...known), hi = Math.max(...known);
  const axis = column && TEMPORAL[column.kind]
    ? { scale: "linear", from: lo, to: hi > lo ? hi : lo + 1, position: (x) => x, value: (t) => t }
    : numericAxis(sample.length ? sample : present, lo, hi, Math.min(...known.filter((v) => v > 0)));
  const t0 = axis.position(axis.from), span = axis.position(axis.to) - t0;
  const edge = (k) => t0 + (span * k) / BINS;
  const made = new Array(BINS).fill(0);
  let zeros = 0;
  for (const v of present) {
    if (axis.scale === "log" && v <= 0) zeros += 1 / total;
    else made[Math.min(BINS - 1, Math.max(0, Math.floor(((axis.position(v) - t0) / span) * BINS)))] += 1 / total;
  }
  const cdf = reference && reference.quantiles ? referenceCdf(reference, axis) : null;
  const slots = made.map((share, k) => ({
    kind: "bin",
    label: `${short(axis.value(edge(k)))} to ${short(axis.value(edge(k + 1)))}`,
    made: share,
    real: cdf ? cdf.present * ((k === BINS - 1 ? 1 : cdf.at(edge(k + 1))) - (k === 0 ? cdf.base : cdf.at(edge(k)))) : null,
  }));
  const realZeros = cdf ? cdf.present * cdf.base : null;
  if (axis.scale === "log" && (zeros > 0 || realZeros > 0)) slots.unshift({ kind: "zero", label: "0", made: zeros, real: realZeros });
  const notes = axis.scale === "log" ? ["log scale"] : axis.scale === "symlog" ? [`symlog scale: linear within ±${short(axis.linear)}`] : [];
  const kind = column && TEMPORAL[column.kind];
  if (kind) {
    slots.forEach((s, k) => (s.label = `${stampText(axis.value(edge(k)), kind)} to ${stampText(axis.value(edge(k + 1)), kind)}`));
    return { slots, scale: "time", ends: [stampText(axis.from, kind), stampText(axis.to, kind)], notes: ["time axis"] };
  }
  return { slots, scale: axis.scale, ends: [short(axis.from), short(axis.to)], notes };
}

// A linear axis, unless it would crowd the column into a bar or two (the middle 90% of `sample` in under
// a quarter of the range) while the values' sizes span two decades or more (the largest over the 1st
// percentile of the non-zero ones): then log bins for values >= 0, from the smallest positive one (zero
// gets a bar of its own), or symlog bins, sign(x) log10(1 + |x| / c), where there are negatives, with c
// the median size (a smaller c spreads the values near zero so thin that a peak there looks like a dip).
function numericAxis(sample, lo, hi, smallestPositive) {
  const sorted = [...sample].sort((a, b) => a - b);
  const sizes = sorted.filter((v) => v !== 0).map(Math.abs).sort((a, b) => a - b);
  const small = quantile(sizes, 0.01);
  const crowded = quantile(sorted, 0.95) - quantile(sorted, 0.05) < (hi - lo) / 4;
  const decades = small > 0 && Math.max(-lo, hi) / small >= 100;
  if (!crowded || !decades) {
    return { scale: "linear", from: lo, to: hi > lo ? hi : lo + 1, position: (x) => x, value: (t) => t };
  }
  if (lo >= 0) {
    const from = smallestPositive;
    return { scale: "log", from, to: hi, position: (x) => Math.log10(Math.max(x, from)), value: (t) => 10 ** t };
  }
  const c = quantile(sizes, 0.5);
  return {
    scale: "symlog",
    linear: c,
    from: lo,
    to: hi,
    position: (x) => Math.sign(x) * Math.log10(1 + Math.abs(x) / c),
    value: (t) => Math.sign(t) * c * (10 ** Math.abs(t) - 1),
  };
}

function quantile(sorted, p) {
  if (!sorted.length) return NaN;
  const at = p * (sorted.length - 1), i = Math.floor(at);
  return i + 1 < sorted.length ? sorted[i] + (at - i) * (sorted[i + 1] - sorted[i]) : sorted[i];
}

// The training values' CDF at an axis position, interpolated between their quantiles on the axis (so
// that a log axis spreads a quantile step over its decades); on a log axis `base` is the share <= 0, the
// zero bar's. `present`: the share of rows with a value.
function referenceCdf(reference, axis) {
  const q = reference.quantiles;
  const levels = reference.levels || q.map((_, i) => i / (q.length - 1));
  const kept = q.map((v, i) => [v, levels[i]]).filter(([v]) => axis.scale !== "log" || v > 0);
  const below = q.map((v, i) => [v, levels[i]]).filter(([v]) => axis.scale === "log" && v <= 0);
  const base = below.length ? below.at(-1)[1] : 0;
  const positions = kept.map(([v]) => axis.position(v)), shares = kept.map(([, level]) => level);
  return {
    base,
    present: 1 - (reference.missing || 0),
    at: (t) => (kept.length ? interpolate(t, positions, shares) : 1),
  };
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
