// The swd console: polls /api/console every 500 ms and redraws. No framework, no network
// beyond this server. Elements carry data-* attributes (worker, state, owner) that the
// browser test reads.
"use strict";

const POLL_MS = 500;
const PALETTE = ["#2f6fdb", "#d9822b", "#2e8b57", "#8e44ad", "#c0392b", "#16a085", "#7f8c8d",
                 "#b8860b", "#1f3a93", "#e84393", "#556b2f", "#6c5ce7"];
const colours = new Map();

function colour(worker) {
  if (!colours.has(worker)) colours.set(worker, PALETTE[colours.size % PALETTE.length]);
  return colours.get(worker);
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function ago(ms) {
  if (ms < 1000) return `${ms} ms`;
  if (ms < 120000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.round(ms / 60000)} min`;
}

function bytes(n) {
  if (n == null) return "–";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function renderHeader(data) {
  const s = data.status;
  const conn = document.getElementById("connection");
  conn.hidden = !data.error;
  conn.textContent = data.error || "";
  if (!s) return;
  document.getElementById("cluster").textContent = s.cluster;
  const healthy = s.workers.filter(w => w.healthy).length;
  document.getElementById("summary").textContent =
    `generation ${s.generation} · ${s.partitions} partitions · ${healthy}/${s.workers.length} workers healthy · ` +
    `rebalance ${s.strategy}` + (s.unassigned_reason ? ` · ${s.unassigned_reason}` : "");
}

function renderJob(data) {
  const box = document.getElementById("job");
  const j = data.status && data.status.job;
  if (!j) { box.replaceChildren(el("p", { class: "muted" }, "no job")); return; }
  const rows = [
    ["state", el("span", { class: `state ${j.state}`, "data-state": j.state }, j.state)],
    ["attempt", `${j.attempt} (${j.restarts} restarts)`],
    ["records in / out", `${j.records_in.toLocaleString()} / ${j.records_out.toLocaleString()}`],
    ["partitions done", `${j.partitions_done}`],
    ["elapsed", ago(j.elapsed_ms)],
  ];
  if (j.lag != null) rows.push(["lag", `${j.lag.toLocaleString()} records`]);
  if (j.last_restored_checkpoint != null) rows.push(["restored from", `checkpoint ${j.last_restored_checkpoint}`]);
  if (j.last_recovery_ms != null) rows.push(["last recovery", `${j.last_recovery_ms} ms`]);
  // While the job runs, `error` is why the last attempt was aborted (it recovered since).
  if (j.error) rows.push(j.state === "failed"
    ? ["error", el("span", { class: "bad" }, j.error)]
    : ["last abort", el("span", { class: "muted" }, j.error)]);
  const dl = el("dl");
  for (const [k, v] of rows) dl.append(el("dt", {}, k), el("dd", {}, v));
  box.replaceChildren(el("h3", { id: "job-name" }, j.name), dl);
}

function renderJobs(data) {
  const jobs = data.jobs || [];
  document.getElementById("jobs-section").hidden = jobs.length === 0;
  document.querySelector("#jobs tbody").replaceChildren(...jobs.map(j => el("tr", { "data-job": j.id, "data-state": j.state },
    el("td", {}, j.id),
    el("td", {}, j.name),
    el("td", {}, el("span", { class: `state ${j.state}` }, j.state)),
    el("td", {}, j.restarts),
    el("td", {}, `${j.records_in.toLocaleString()} / ${j.records_out.toLocaleString()}`),
    el("td", { class: "muted" }, j.savepoint || "-"))));
}

function renderWorkers(data) {
  const body = document.querySelector("#workers tbody");
  const s = data.status;
  if (!s) return;
  body.replaceChildren(...s.workers.map(w => el("tr", { "data-worker": w.id, "data-state": w.state, "data-healthy": String(w.healthy) },
    el("td", {}, el("i", { class: "swatch", style: `background:${colour(w.id)}` }), w.id),
    el("td", {}, el("span", { class: `state ${w.state}` }, w.state)),
    el("td", { class: w.healthy ? "healthy" : "unhealthy" }, w.healthy ? "healthy" : "missed heartbeats"),
    el("td", {}, w.partitions.length),
    el("td", {}, `${w.load} / ${w.capacity}`),
    el("td", {}, `${ago(w.last_heartbeat_ms)} ago`),
    el("td", { class: "muted" }, w.address))));
}

function renderPartitions(data) {
  const s = data.status;
  if (!s) return;
  const owner = new Array(s.partitions).fill(null);
  for (const w of s.workers) for (const p of w.partitions) owner[p] = w.id;
  const moving = new Map(s.moving.map(m => [m.partition, m]));
  const cells = owner.map((o, p) => {
    const m = moving.get(p);
    const cls = ["partition", o ? "" : "unassigned", m ? "moving" : ""].join(" ").trim();
    const label = m ? `→ ${m.to || "?"}` : (o || "unassigned");
    const cell = el("div", { class: cls, "data-partition": String(p), "data-owner": o || "",
                             title: m ? `moving from ${m.from} to ${m.to || "?"}` : label },
                    el("b", {}, p), label);
    if (o) cell.style.background = colour(o);
    return cell;
  });
  document.getElementById("partitions").replaceChildren(...cells);
  document.getElementById("partition-legend").textContent =
    `${s.partitions - s.unassigned.length} owned · ${s.moving.length} moving · ${s.unassigned.length} unassigned`;
}

// Draws `series` (arrays of [x, y]) on a canvas sized to its box, y from 0 to the maximum.
function lineChart(canvas, series, xMin, xMax, yLabel) {
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  canvas.width = w * ratio; canvas.height = h * ratio;
  const g = canvas.getContext("2d");
  g.scale(ratio, ratio);
  g.clearRect(0, 0, w, h);
  const left = 56, bottom = 18, top = 8;
  let yMax = 1;
  for (const s of series) for (const [, y] of s.points) yMax = Math.max(yMax, y);
  yMax *= 1.1;
  g.strokeStyle = "#dcdcd8"; g.fillStyle = "#6b6b70"; g.font = "11px system-ui";
  for (let i = 0; i <= 3; i++) {
    const y = top + (h - top - bottom) * (1 - i / 3);
    g.beginPath(); g.moveTo(left, y); g.lineTo(w, y); g.stroke();
    g.fillText(yLabel(yMax * i / 3), 2, y + 4);
  }
  g.fillText(`${Math.round((xMax - xMin) / 1000)} s`, left, h - 4);
  g.fillText("now", w - 24, h - 4);
  const x = v => left + (w - left) * (v - xMin) / Math.max(1, xMax - xMin);
  const y = v => top + (h - top - bottom) * (1 - v / yMax);
  for (const s of series) {
    g.strokeStyle = s.colour; g.lineWidth = 2; g.beginPath();
    s.points.forEach(([px, py], i) => i ? g.lineTo(x(px), y(py)) : g.moveTo(x(px), y(py)));
    g.stroke();
  }
}

function compact(n) {
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return n.toFixed(0);
}

function renderThroughput(data) {
  const samples = data.samples;
  const xMax = data.now_ms, xMin = Math.max(0, xMax - 300000);
  lineChart(document.getElementById("throughput"), [
    { colour: "#2f6fdb", points: samples.map(s => [s.at_ms, s.records_in_per_s]) },
    { colour: "#d9822b", points: samples.map(s => [s.at_ms, s.records_out_per_s]) },
  ], xMin, xMax, compact);
}

function renderCheckpoints(data) {
  const current = data.status && data.status.checkpoints;
  document.getElementById("checkpoint-summary").textContent = current
    ? `${current.completed} completed` + (current.in_flight != null ? ` · ${current.in_flight} in flight` : "") +
      ` · ${data.totals.checkpoint_failures} abandoned`
    : "checkpoints are off";
  const list = data.checkpoints.slice(-40);
  const canvas = document.getElementById("checkpoint-chart");
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  canvas.width = w * ratio; canvas.height = h * ratio;
  const g = canvas.getContext("2d");
  g.scale(ratio, ratio);
  g.clearRect(0, 0, w, h);
  const max = Math.max(1, ...list.map(c => c.duration_ms || 0));
  const bar = w / 40;
  g.fillStyle = "#2f6fdb";
  list.forEach((c, i) => {
    const bh = (h - 14) * (c.duration_ms || 0) / max;
    g.fillRect(i * bar + 1, h - bh, bar - 2, bh);
  });
  g.fillStyle = "#6b6b70"; g.font = "11px system-ui";
  g.fillText(`duration, max ${max} ms`, 2, 10);
  document.querySelector("#checkpoints tbody").replaceChildren(...list.slice(-8).reverse().map(c =>
    el("tr", { "data-checkpoint": String(c.id) },
      el("td", {}, c.id), el("td", {}, c.duration_ms == null ? "–" : `${c.duration_ms} ms`),
      el("td", {}, bytes(c.size_bytes)), el("td", {}, `${ago(data.now_ms - c.at_ms)} ago`))));
}

function renderEvents(data) {
  document.getElementById("events").replaceChildren(...data.events.slice().reverse().map(e =>
    el("li", { class: e.kind }, el("span", {}, `${ago(data.now_ms - e.at_ms)} ago`), e.message)));
}

async function poll() {
  try {
    const response = await fetch("/api/console", { cache: "no-store" });
    const data = await response.json();
    renderHeader(data);
    renderJob(data);
    renderJobs(data);
    renderWorkers(data);
    renderPartitions(data);
    renderThroughput(data);
    renderCheckpoints(data);
    renderEvents(data);
    document.body.dataset.updated = String(Date.now());
  } catch (e) {
    const conn = document.getElementById("connection");
    conn.hidden = false;
    conn.textContent = `console unreachable: ${e}`;
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

poll();
