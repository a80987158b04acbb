// The playground page: the spec is checked as you type (POST /api/check), drawn once it checks
// (POST /api/draw), trained on a built-in task with its loss drawn as the events arrive (POST /api/train,
// server-sent events read from the response body; aborting the request stops the run). The spec and the
// options live in the address's fragment, so a link reproduces the page. Text from the spec is only
// ever set as text (textContent), never as markup.
"use strict";

const $ = (id) => document.getElementById(id);
const OPTIONS = ["network", "unroll", "task", "steps", "batch", "lr"];
const state = { checkTimer: 0, drawTimer: 0, checked: 0, run: null, losses: [], networks: [] };

async function post(path, body, init = {}) {
  const response = await fetch(path, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), ...init,
  });
  if (!response.ok) {
    let message = `${response.status}`;
    try { message = (await response.json()).error || message; } catch (err) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

// ---- the address: the spec and the options ----------------------------------------------------------

function saveAddress() {
  const params = new URLSearchParams();
  params.set("spec", $("spec").value);
  for (const key of OPTIONS) if ($(key).value) params.set(key, $(key).value);
  history.replaceState(null, "", "#" + params.toString());
}

function readAddress() {
  const params = new URLSearchParams(location.hash.slice(1));
  for (const key of OPTIONS) {
    if (!params.has(key)) continue;
    if (key === "network") state.wantedNetwork = params.get(key);
    else $(key).value = params.get(key);
  }
  return params.has("spec") ? params.get("spec") : null;
}

// ---- checking and drawing ---------------------------------------------------------------------------

function changed() {
  clearTimeout(state.checkTimer);
  state.checkTimer = setTimeout(check, 120);
  saveAddress();
}

async function check() {
  const ticket = ++state.checked;
  let facts;
  try {
    facts = await (await post("/api/check", { spec: $("spec").value })).json();
  } catch (err) {
    showVerdict(false, `cannot check: ${err.message}`);
    return;
  }
  if (ticket !== state.checked) return; // a later keystroke's answer is on its way
  showDiagnostics(facts.diagnostics);
  const errors = facts.diagnostics.filter((d) => d.severity === "error").length;
  showVerdict(facts.ok, facts.ok ? "checks" : `${errors} error${errors === 1 ? "" : "s"}`);
  if (facts.ok) {
    showNetworks(facts.networks);
    clearTimeout(state.drawTimer);
    state.drawTimer = setTimeout(draw, 350);
  } else {
    for (const id of ["folded", "unrolled"]) $(id).classList.add("stale");
  }
}

function showVerdict(ok, text) {
  $("verdict").textContent = text;
  $("verdict").className = "verdict " + (ok ? "ok" : "bad");
}

function showDiagnostics(list) {
  const box = $("diagnostics");
  box.replaceChildren();
  for (const d of list) {
    const item = document.createElement("li");
    item.className = "diagnostic " + d.severity;
    item.textContent = `${d.line}:${d.column}: ${d.severity}: ${d.message}` + (d.hint ? `\n  help: ${d.hint}` : "");
    item.addEventListener("click", () => select(d.line, d.column, d.end_line, d.end_column));
    box.append(item);
  }
}

function offsetOf(line, column) {
  const rows = $("spec").value.split("\n");
  let offset = 0;
  for (let i = 0; i < line - 1 && i < rows.length; i++) offset += rows[i].length + 1;
  return offset + column - 1;
}

function select(line, column, endLine, endColumn) {
  const spec = $("spec");
  spec.focus();
  spec.setSelectionRange(offsetOf(line, column), Math.max(offsetOf(line, column) + 1, offsetOf(endLine, endColumn)));
}

function showNetworks(networks) {
  state.networks = networks;
  const picker = $("network");
  const keep = state.wantedNetwork || picker.value;
  picker.replaceChildren();
  for (const n of networks) {
    const option = document.createElement("option");
    option.value = option.textContent = n.name;
    picker.append(option);
  }
  if (networks.some((n) => n.name === keep)) picker.value = keep;
  else if (networks.length) picker.value = networks[networks.length - 1].name;
  state.wantedNetwork = null;
  showFacts();
}

function showFacts() {
  const net = state.networks.find((n) => n.name === $("network").value);
  $("params").textContent = net ? `${net.parameters.toLocaleString("en")} parameters` : "";
  $("loops").textContent = net
    ? net.loops.map((l) => `{${l.nodes.join(", ")}} t-${l.delays.join(", t-")}`).join("; ") || "no loop" : "";
}

async function draw() {
  const ticket = state.checked;
  const body = { spec: $("spec").value, unroll: Number($("unroll").value) || 3 };
  if ($("network").value) body.network = $("network").value;
  try {
    const pictures = await (await post("/api/draw", body)).json();
    if (ticket !== state.checked) return;
    for (const id of ["folded", "unrolled"]) {
      // SVG made by the server from the checked network: node names are identifiers, numbers and fixed text
      $(id).innerHTML = pictures[id];
      $(id).classList.remove("stale");
    }
  } catch (err) {
    showVerdict(false, `cannot draw: ${err.message}`);
  }
}

// ---- examples -----------------------------------------------------------------------------------------

async function loadExamples() {
  const { examples } = await (await fetch("/api/examples")).json();
  for (const name of examples) {
    const option = document.createElement("option");
    option.value = option.textContent = name;
    $("examples").append(option);
  }
}

async function pickExample(name) {
  if (!name) return;
  const response = await fetch("/api/examples/" + name.split("/").map(encodeURIComponent).join("/"));
  $("spec").value = await response.text();
  if (name.startsWith("tasks/names")) $("task").value = "names";
  if (name.startsWith("tasks/digits")) $("task").value = "digits";
  changed();
}

// ---- training -----------------------------------------------------------------------------------------

function status(text) { $("status").textContent = text; }

function drawCurve() {
  const losses = state.losses;
  if (!losses.length) { $("loss").setAttribute("points", ""); $("curve-axis").textContent = ""; return; }
  const steps = Number($("steps").value) || losses.length;
  const lo = Math.min(...losses), hi = Math.max(...losses), span = hi - lo || 1;
  const points = losses.map((v, i) => `${((i + 1) / steps) * 600},${190 - ((v - lo) / span) * 180}`);
  $("loss").setAttribute("points", points.join(" "));
  $("curve-axis").textContent = `loss ${hi.toFixed(3)} (top) to ${lo.toFixed(3)} (bottom), steps 1 to ${steps}`;
}

async function train() {
  if (state.run) { state.run.abort(); return; }
  const body = {
    spec: $("spec").value, task: $("task").value, steps: Number($("steps").value),
    batch: Number($("batch").value), lr: Number($("lr").value),
  };
  if ($("network").value) body.network = $("network").value;
  state.losses = [];
  drawCurve();
  $("samples").replaceChildren();
  const run = (state.run = new AbortController());
  $("train").textContent = "Stop";
  status("starting (the first run loads torch and the task's data)");
  try {
    const response = await post("/api/train", body, { signal: run.signal });
    await readEvents(response.body.getReader());
  } catch (err) {
    status(err.name === "AbortError" ? `stopped at step ${state.losses.length}` : `error: ${err.message}`);
  } finally {
    state.run = null;
    $("train").textContent = "Train";
  }
}

async function readEvents(reader) {
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const kind = (block.match(/^event: (.*)$/m) || [])[1];
      const data = (block.match(/^data: (.*)$/m) || [])[1];
      if (kind) onEvent(kind, JSON.parse(data));
    }
  }
}

function onEvent(kind, data) {
  if (kind === "start") status(`training ${data.network} (${data.parameters.toLocaleString("en")} parameters) on ${data.task.name}`);
  if (kind === "step") {
    state.losses.push(data.loss);
    drawCurve();
    status(`step ${data.step} of ${$("steps").value}: loss ${data.loss.toFixed(4)} (${data.seconds.toFixed(1)} s)`);
  }
  if (kind === "validation") {
    const shown = Object.entries(data.metrics).map(([k, v]) => `${k} ${v.toFixed(4)}`).join(", ");
    status(`validation after ${state.losses.length} steps: ${shown}`);
  }
  if (kind === "samples") {
    for (const line of data.lines) {
      const item = document.createElement("li");
      item.textContent = line;
      $("samples").append(item);
    }
  }
  if (kind === "stopped") status(`stopped at step ${data.step}`);
  if (kind === "error") status(`error: ${data.message}`);
}

// ---- start --------------------------------------------------------------------------------------------

async function start() {
  $("spec").addEventListener("input", changed);
  $("examples").addEventListener("change", (e) => pickExample(e.target.value));
  $("network").addEventListener("change", () => { showFacts(); saveAddress(); draw(); });
  $("unroll").addEventListener("change", () => { saveAddress(); draw(); });
  for (const key of ["task", "steps", "batch", "lr"]) $(key).addEventListener("change", saveAddress);
  $("train").addEventListener("click", train);
  $("spec").addEventListener("keydown", (e) => {
    if (e.key !== "Tab") return;
    e.preventDefault();
    document.execCommand("insertText", false, "    ");
  });
  const spec = readAddress();
  await loadExamples();
  if (spec !== null) { $("spec").value = spec; changed(); }
  else { $("examples").value = "tasks/digits_elman.rnn"; await pickExample("tasks/digits_elman.rnn"); }
}

start();
