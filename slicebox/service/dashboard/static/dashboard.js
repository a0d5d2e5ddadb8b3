// The Slicebox dashboard: reads /v1/pool, /v1/jobs, /v1/services, /v1/history and
// /v1/simulations every 2 s and draws them; starts simulations and shows their reports.
// Everything a job's owner typed (names, reasons) goes in through textContent or attributes, never as HTML.
"use strict";

const POLL_MS = 2000;
const TOKEN_KEY = "slicebox.token";
const SVG = "http://www.w3.org/2000/svg";
const ACTIVE = new Set(["queued", "staging", "running", "preempted"]);
let timer = null;
// The MLflow UI's address, as /v1/health gives it (`slicebox up --serve --mlflow-ui URL`):
// undefined until asked, null when the service has none (job names are then not links).
let mlflowUi = undefined;

// --- the token: from #token=... once (then taken out of the URL), else the form ----------

function takeTokenFromFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("token");
  if (token) {
    sessionStorage.setItem(TOKEN_KEY, token);
    history.replaceState(null, "", location.pathname + location.search);
  }
}

function token() { return sessionStorage.getItem(TOKEN_KEY); }

function askForToken(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  clearTimeout(timer);
  Object.assign(sim, { choices: null, shown: null, report: null });  // another token, team
  document.getElementById("main").hidden = true;
  document.getElementById("forget").hidden = true;
  document.getElementById("login").hidden = false;
  document.getElementById("login-error").textContent = message || "";
  setStatus("");
}

class Unauthorized extends Error {}

class Refused extends Error {  // the API's problem details: status and detail
  constructor(path, status, detail) {
    super(path + ": " + status + " " + detail);
    this.status = status;
    this.detail = detail;
  }
}

// GET path (or POST `body` as JSON); `as`: "json" (default) or "dataurl" (an image, as a
// data: URL, which the page's CSP allows for images: an <img src> could not send the token).
async function api(path, body, as) {
  const response = await fetch(path, {
    method: body === undefined ? "GET" : "POST",
    headers: { Authorization: "Bearer " + token(), Accept: "application/json",
               ...(body === undefined ? {} : { "Content-Type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  if (response.status === 401) throw new Unauthorized("the token is not valid (wrong, revoked or expired)");
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail || detail; } catch (e) { /* not JSON */ }
    throw new Refused(path, response.status, detail);
  }
  if (as === "dataurl") {
    const blob = await response.blob();
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result);
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(blob);
    });
  }
  return response.json();
}

// --- helpers ------------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

function hash(text) {
  let h = 2166136261;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619);
  return h >>> 0;
}

// One colour per job, stable across refreshes; another team's holdings are hatched grey.
function colour(holder) {
  if (!holder.job_id) return null;
  const hue = (hash(holder.job_id) * 0.618033988749895 * 360) % 360;
  return "hsl(" + hue.toFixed(0) + ", 62%, 46%)";
}

function paint(node, holder) {
  const c = colour(holder);
  if (c) node.style.background = c; else node.classList.add("other");
}

function holderText(holder) {
  return holder.job_id ? holder.job_name + " (" + holder.job_id + ", team " + holder.team + ")"
                       : "a job of team " + holder.team;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  const s = Math.max(0, Math.round(seconds));
  if (s < 120) return s + " s";
  if (s < 7200) return Math.round(s / 60) + " min";
  return (s / 3600).toFixed(1) + " h";
}

function number(value, digits) {
  if (value === null || value === undefined) return "";
  return Number(value).toLocaleString("en", { maximumFractionDigits: digits });
}

function setStatus(text, error) {
  const status = document.getElementById("status");
  status.textContent = text;
  status.classList.toggle("error", Boolean(error));
}

// --- the pool: one box per node -----------------------------------------------------------

function drawPool(pool, jobs) {
  document.getElementById("pool-name").textContent = "pool " + pool.name;
  const memoryByNode = new Map();  // node -> [[holder, GiB]] for the jobs the caller sees
  for (const job of jobs) {
    if (job.state !== "running" && job.state !== "staging") continue;
    const holder = { job_id: job.id, job_name: job.name, team: job.team };
    for (const part of job.parts) {
      if (!memoryByNode.has(part.node)) memoryByNode.set(part.node, []);
      memoryByNode.get(part.node).push([holder, part.memory_gib]);
    }
  }
  const boxes = pool.nodes.map((node) => drawNode(node, memoryByNode.get(node.name) || []));
  document.getElementById("nodes").replaceChildren(...boxes);
}

function drawNode(node, memory) {
  const held = new Map();  // job id or team -> [holder, what]
  const note = (holder, what) => {
    const key = holder.job_id || "team:" + holder.team;
    if (!held.has(key)) held.set(key, [holder, []]);
    held.get(key)[1].push(what);
  };
  const box = el("div", { class: "node", "data-node": node.name }, el("h3", {}, node.name));

  if (node.devices.length) box.append(el("h4", {}, "GPUs"));
  for (const device of node.devices) {
    const card = el("div", { class: "card" });
    for (const s of device.slices) {
      const what = s.shape === "mig" ? "MIG " + s.mig_profile
        : s.shape === "whole" ? "whole card" : Math.round(s.compute * 100) + "% share";
      const piece = el("div", { class: "slice", "data-job": s.holder.job_id || "",
                                title: holderText(s.holder) + ": gpu" + device.index + " " +
                                       what + ", " + number(s.memory_gib, 1) + " GiB" },
                       (s.holder.job_name || s.holder.team) + " · " + what);
      piece.style.width = Math.min(100, s.compute * 100) + "%";
      paint(piece, s.holder);
      card.append(piece);
      note(s.holder, "gpu" + device.index + " " + what);
    }
    box.append(el("div", { class: "gpu" },
                  el("div", { class: "label" }, "gpu" + device.index + " · " + device.kind +
                     " · " + number(device.memory_gib, 0) + " GiB" +
                     (device.mig_enabled ? " · MIG" : "") +
                     (device.numa_node !== null ? " · NUMA " + device.numa_node : "")),
                  card));
  }

  box.append(el("h4", {}, "Cores"));
  for (const [numa, ids] of Object.entries(node.cores_by_numa)) {
    const grid = el("div", { class: "cores" });
    for (const id of ids) {
      const holder = node.cores_held[String(id)];
      const core = el("div", { class: holder ? "core held" : "core",
                               title: holder ? "core " + id + ": " + holderText(holder)
                                             : "core " + id + ": free" }, id);
      if (holder) { paint(core, holder); note(holder, "core " + id); }
      grid.append(core);
    }
    box.append(el("div", { class: "numa" }, el("div", { class: "label" }, "NUMA " + numa), grid));
  }

  box.append(el("h4", {}, "Memory · " + number(node.memory_held_gib, 1) + " of " +
                number(node.memory_gib, 1) + " GiB held"));
  const bar = el("div", { class: "memory" });
  let mine = 0;
  for (const [holder, gib] of memory) {
    const part = el("div", { title: holderText(holder) + ": " + number(gib, 1) + " GiB",
                             "data-job": holder.job_id });
    part.style.width = (100 * gib / node.memory_gib) + "%";
    paint(part, holder);
    bar.append(part);
    mine += gib;
  }
  if (node.memory_held_gib - mine > 1e-6) {  // held by jobs the caller does not see
    const rest = el("div", { class: "other", title: "held by other teams' jobs: " +
                             number(node.memory_held_gib - mine, 1) + " GiB" });
    rest.style.width = (100 * (node.memory_held_gib - mine) / node.memory_gib) + "%";
    bar.append(rest);
  }
  box.append(bar);

  if (node.volumes.length) {
    box.append(el("h4", {}, "Volumes"), el("div", { class: "volumes" }, node.volumes.map(
      (v) => v.name + " (" + v.tier + ", " + number(v.capacity_gib, 0) + " GiB) " + v.path)
      .join(" · ")));
  }

  const list = el("ul", { class: "holders" });
  for (const [holder, what] of held.values()) {
    const swatch = el("span", { class: "swatch" });
    paint(swatch, holder);
    list.append(el("li", { "data-job": holder.job_id || "" }, swatch,
                   holderText(holder) + ": " + what.join(", ")));
  }
  if (!held.size) list.append(el("li", { class: "empty" }, "nothing held"));
  box.append(list);
  return box;
}

// --- the job table --------------------------------------------------------------------------

// A job's MLflow run: the UI's own route for a run by id (it finds the run's experiment),
// built from the service's address for the UI (checked as http(s) when the service started;
// checked again here, since an href is where a click goes) and the id, percent-encoded.
function mlflowRunUrl(runId) {
  if (!mlflowUi || !runId) return null;
  let url;
  try { url = new URL(mlflowUi + "/#/runs/" + encodeURIComponent(runId)); } catch (e) { return null; }
  return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
}

function nameCell(job) {
  if (!job.mlflow_run_id) return el("td", {}, job.name);
  const href = mlflowRunUrl(job.mlflow_run_id);
  if (!href) {
    return el("td", {}, el("span", { class: "mlflow-run", title: "MLflow run " +
      job.mlflow_run_id + " (to link it here, start the service with " +
      "`slicebox up --serve --mlflow-ui http://<mlflow host>:5000`)" }, job.name));
  }
  return el("td", {}, el("a", { class: "mlflow-run", href, target: "_blank",
                                rel: "noopener noreferrer",
                                title: "MLflow run " + job.mlflow_run_id }, job.name));
}

// "after <id>": which jobs a job waits for, by name and state, on hover.
function dependencyNote(job, byId) {
  const spec = job.spec || {};
  const deps = [...(spec.after || []).map((id) => ["after", id]),
                ...(spec.afterok || []).map((id) => ["afterok", id])];
  if (!deps.length) return null;
  return "waits for: " + deps.map(([kind, id]) => {
    const other = byId.get(id);
    return kind + " " + id + (other ? " (" + other.name + ", " + other.state + ")" : "");
  }).join("; ");
}

function drawJobs(jobs, since) {
  const byId = new Map(jobs.map((j) => [j.id, j]));
  const shown = jobs.filter((j) => ACTIVE.has(j.state) || (j.finished_at || 0) >= since)
    .sort((a, b) => (ACTIVE.has(b.state) - ACTIVE.has(a.state)) || b.submitted_at - a.submitted_at)
    .slice(0, 300);
  const now = Date.now() / 1000;
  const rows = shown.map((job) => {
    const holder = { job_id: job.id, job_name: job.name, team: job.team };
    const swatch = el("span", { class: "swatch" });
    paint(swatch, holder);
    const waited = job.wait_seconds !== null ? job.wait_seconds
      : ACTIVE.has(job.state) ? now - job.submitted_at : null;
    return el("tr", { "data-job": job.id },
      el("td", { class: "mono" }, swatch, job.id),
      nameCell(job),
      el("td", {}, job.team),
      el("td", {}, el("span", { class: "state state-" + job.state }, job.state +
                      (job.cancel_requested ? " (cancelling)" : ""))),
      el("td", { class: "num" }, number(job.samples, 0)),
      el("td", { class: "num" }, number(job.samples_per_s, 1)),
      el("td", { class: "num" }, number(job.quality, 4)),
      el("td", {}, job.composition || ""),
      el("td", { class: "num" }, duration(waited)),
      el("td", { class: "num" }, duration(job.run_seconds)),
      reasonCell(job, byId));
  });
  if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 11, class: "empty" }, "no jobs")));
  document.querySelector("#jobs tbody").replaceChildren(...rows);
}

// Services (kind: service): replicas running / wanted, the balancer's URL, rate and p99.
function drawServices(services) {
  const rows = services.map((s) => el("tr", { "data-service": s.id },
    el("td", { class: "mono" }, s.id),
    el("td", {}, s.name),
    el("td", {}, s.team),
    el("td", {}, el("span", { class: "state state-" + s.state }, s.state)),
    el("td", { class: "num" }, s.running + " / " + s.desired),
    el("td", { class: "mono" }, s.url || ""),
    el("td", { class: "num" }, s.rate_rps === null ? "" : number(s.rate_rps, 1) + "/s"),
    el("td", { class: "num" }, (s.p99_ms === null ? "-" : number(s.p99_ms, 1)) +
       (s.objective_p99_ms === null ? "" : " / " + number(s.objective_p99_ms, 1)) + " ms")));
  if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 8, class: "empty" }, "no services")));
  document.querySelector("#services tbody").replaceChildren(...rows);
}

function reasonCell(job, byId) {
  const note = dependencyNote(job, byId);
  const cell = el("td", { class: "reason" }, job.reason);
  if (note) {
    cell.title = note;
    cell.dataset.after = [...(job.spec.after || []), ...(job.spec.afterok || [])].join(" ");
  }
  return cell;
}

// --- the Gantt chart: a row per card (and per node's cores), a row per waiting job ---------

function lanes(bars) {  // stack overlapping bars in sub-rows, greedily
  const ends = [];
  for (const bar of bars.sort((a, b) => a.start - b.start)) {
    let lane = ends.findIndex((end) => end <= bar.start);
    if (lane < 0) { lane = ends.length; ends.push(0); }
    ends[lane] = bar.end;
    bar.lane = lane;
  }
  return Math.max(1, ends.length);
}

function drawGantt(pool, jobs, attempts, since, now) {
  const rows = [];  // {label, bars: [{start, end, holder, what, wait}]}
  const rowOf = new Map();
  const row = (key, label) => {
    if (!rowOf.has(key)) { rowOf.set(key, { label, bars: [] }); rows.push(rowOf.get(key)); }
    return rowOf.get(key);
  };
  for (const node of pool.nodes) {
    for (const d of node.devices) row(node.name + "/gpu" + d.index, node.name + " gpu" + d.index);
    row(node.name + "/cores", node.name + " cores");
  }
  for (const a of attempts) {
    const start = Math.max(a.started_at, since);
    const end = a.ended_at === null ? now : a.ended_at;
    if (end <= since) continue;
    for (const s of a.slices) {
      const what = s.shape === "mig" ? "MIG " + s.mig_profile
        : s.shape === "whole" ? "whole" : Math.round(s.compute * 100) + "%";
      row(s.node + "/gpu" + s.device, s.node + " gpu" + s.device).bars.push(
        { start, end, holder: a.holder, what: "gpu" + s.device + " " + what });
    }
    for (const [nodeName, cores] of Object.entries(a.cores)) {
      row(nodeName + "/cores", nodeName + " cores").bars.push(
        { start, end, holder: a.holder, what: cores.length + " cores" });
    }
  }
  // Queue waits: submission to the first start, and each requeue to the next start.
  const byJob = new Map();
  for (const a of attempts) {
    if (!a.holder.job_id) continue;
    if (!byJob.has(a.holder.job_id)) byJob.set(a.holder.job_id, []);
    byJob.get(a.holder.job_id).push(a);
  }
  const waits = [];
  for (const job of jobs) {
    const holder = { job_id: job.id, job_name: job.name, team: job.team };
    const runs = (byJob.get(job.id) || []).sort((x, y) => x.started_at - y.started_at);
    // An earlier attempt may lie before the window: then where the first wait began is
    // not known here, and no wait is drawn before the first attempt shown.
    let from = runs.length && runs[0].attempt > 1 ? null : job.submitted_at;
    const gaps = [];
    for (const run of runs) {
      if (from !== null && run.started_at > from) gaps.push([from, run.started_at]);
      from = run.ended_at;
    }
    const waiting = ACTIVE.has(job.state) && job.state !== "running" && job.state !== "staging";
    if (waiting && from !== null) gaps.push([from, now]);
    // Ended without ever running (cancelled in the queue): it waited until then.
    if (!runs.length && !ACTIVE.has(job.state) && job.finished_at && !job.first_started_at) {
      gaps.push([job.submitted_at, job.finished_at]);
    }
    const bars = gaps.filter(([, end]) => end > since).map(([start, end]) => (
      { start: Math.max(start, since), end, holder, what: "waiting", wait: true }));
    if (bars.length) waits.push({ label: "queue: " + job.name, bars });
  }
  rows.push(...waits.slice(-30));

  const width = Math.max(700, document.getElementById("gantt").clientWidth || 1200) - 2;
  const left = 150, right = 12, lane = 18, top = 22;
  const x = (t) => left + (width - left - right) * (t - since) / Math.max(1, now - since);
  let y = top;
  const chart = svg("svg", { width, role: "img", "aria-label": "who held which slice, when" });
  const axis = svg("g", { class: "axis" });
  const step = [60, 300, 600, 1800, 3600].find((s) => (now - since) / s <= 10) || 7200;
  for (let t = Math.ceil(since / step) * step; t <= now; t += step) {
    const label = new Date(t * 1000).toTimeString().slice(0, 5);
    axis.append(svg("line", { class: "grid", x1: x(t), x2: x(t), y1: top - 4, y2: "100%" }),
                svg("text", { x: x(t) - 14, y: 14 }, label));
  }
  chart.append(axis);
  for (const r of rows) {
    const height = lanes(r.bars) * lane;
    chart.append(svg("text", { x: 6, y: y + 13 }, r.label.length > 22 ? r.label.slice(0, 21) + "…"
                                                                       : r.label));
    chart.append(svg("line", { class: "grid", x1: 0, x2: width, y1: y + height, y2: y + height }));
    for (const bar of r.bars) {
      const x0 = x(bar.start), w = Math.max(2, x(bar.end) - x0);
      const fill = colour(bar.holder) || "#9aa3ad";
      const title = holderText(bar.holder) + ": " + bar.what + ", " +
        new Date(bar.start * 1000).toTimeString().slice(0, 8) + " – " +
        (bar.end >= now - 1 ? "now" : new Date(bar.end * 1000).toTimeString().slice(0, 8)) +
        " (" + duration(bar.end - bar.start) + ")";
      const g = svg("g", { "data-job": bar.holder.job_id || "" }, svg("title", {}, title));
      g.append(svg("rect", { x: x0, y: y + bar.lane * lane + 2, width: w, height: lane - 4,
                             rx: 2, fill, stroke: fill, class: bar.wait ? "wait" : "" }));
      const name = bar.holder.job_name || bar.holder.team;
      if (!bar.wait && w > 40) {
        g.append(svg("text", { class: "bar-label", x: x0 + 4, y: y + bar.lane * lane + 13 },
                     name.slice(0, Math.floor(w / 7))));
      }
      chart.append(g);
    }
    y += height;
  }
  chart.append(svg("line", { class: "now", x1: x(now), x2: x(now), y1: top - 4, y2: y }));
  chart.setAttribute("height", y + 6);
  document.getElementById("gantt").replaceChildren(chart);
}

// --- utilisation over time: GPUs and cores held, as a share of the pool -------------------

function drawUtilisation(pool, attempts, since, now) {
  const total = { gpus: 0, cores: 0 };
  for (const node of pool.nodes) {
    total.gpus += node.devices.length;
    for (const ids of Object.values(node.cores_by_numa)) total.cores += ids.length;
  }
  const deltas = new Map();  // time -> [GPU share, cores] held from then on
  const add = (t, gpus, cores) => {
    const d = deltas.get(t) || [0, 0];
    deltas.set(t, [d[0] + gpus, d[1] + cores]);
  };
  for (const a of attempts) {
    const end = a.ended_at === null ? now : a.ended_at;
    if (end <= since) continue;
    const gpus = a.slices.reduce((sum, s) => sum + s.compute, 0);
    const cores = Object.values(a.cores).reduce((sum, ids) => sum + ids.length, 0);
    add(Math.max(a.started_at, since), gpus, cores);
    add(end, -gpus, -cores);
  }
  const width = Math.max(700, document.getElementById("utilisation").clientWidth || 1200) - 2;
  const left = 150, right = 12, height = 90, top = 8, bottom = 8;
  const x = (t) => left + (width - left - right) * (t - since) / Math.max(1, now - since);
  const y = (share) => top + (height - top - bottom) * (1 - Math.min(1, share));
  const chart = svg("svg", { width, height, role: "img", "aria-label": "utilisation over time" });
  for (const share of [0, 0.5, 1]) {
    chart.append(svg("line", { class: "grid", x1: left, x2: width - right, y1: y(share),
                               y2: y(share) }),
                 svg("text", { x: left - 36, y: y(share) + 4 }, Math.round(share * 100) + "%"));
  }
  for (const [series, index] of [["gpus", 0], ["cores", 1]]) {
    if (!total[series]) continue;
    let held = 0, last = since;
    let d = "M" + x(since) + " " + y(0);
    for (const t of [...deltas.keys()].sort((a, b) => a - b)) {
      d += " H" + x(t);
      held += deltas.get(t)[index];
      d += " V" + y(held / total[series]);
      last = t;
    }
    if (last < now) d += " H" + x(now);
    chart.append(svg("path", { class: series, "data-series": series, d },
                     svg("title", {}, series + " held, of " + total[series] + " in the pool")));
  }
  document.getElementById("utilisation").replaceChildren(chart);
}

// --- simulations: start one, follow it, show its report -------------------------------------

const SIM_TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const sim = { choices: null, shown: null, report: null };  // report: the id drawn, when final

// The pool a trace was made for (what `slicebox simulate`'s docs pair it with).
function poolFor(trace) {
  if (trace.startsWith("gavel/")) return "gavel-48";
  if (trace.startsWith("pollux-workloads/")) return "sia-64";
  if (trace.startsWith("alibaba-gpu-2023/")) return "alibaba-gpu-2023";
  if (trace.startsWith("philly/")) return "philly-2000";
  return null;
}

function fill(select, values, chosen) {
  select.replaceChildren(...values.map((v) => el("option", { value: v }, v)));
  if (values.includes(chosen)) select.value = chosen;
}

async function loadChoices() {
  const choices = await api("/v1/simulations/choices");
  // First offered: a small trace of a few dozen jobs (the README's example), not the
  // alphabetically first (a big cluster trace).
  const first = choices.traces.find((t) => t.startsWith("pollux-workloads/")) ||
                choices.traces[0] || "";
  fill(document.getElementById("sim-trace"), choices.traces, first);
  fill(document.getElementById("sim-pool"), choices.pools, poolFor(first) || choices.pools[0]);
  fill(document.getElementById("sim-policy"), choices.policies, "slicebox");
  sim.choices = choices;
}

async function submitSimulation(event) {
  event.preventDefault();
  const error = document.getElementById("sim-error");
  error.textContent = "";
  const body = { trace: document.getElementById("sim-trace").value,
                 pool: document.getElementById("sim-pool").value,
                 policy: document.getElementById("sim-policy").value };
  const round = document.getElementById("sim-round").value;
  if (round !== "") body.round_seconds = Number(round);
  const button = event.submitter || document.querySelector("#simulate button");
  button.disabled = true;
  try {
    const started = await api("/v1/simulations", body);
    showSimulation(started.id);
  } catch (e) {
    if (e instanceof Unauthorized) { askForToken(e.message); return; }
    error.textContent = e instanceof Refused && e.status === 403
      ? "this token cannot start simulations (it needs the submit scope): " + e.detail
      : e instanceof Refused ? e.detail : String(e.message || e);
  } finally {
    button.disabled = false;
  }
}

function showSimulation(id) {
  sim.shown = id;
  sim.report = null;
  refresh();
}

function progressCell(s) {
  if (!s.progress) return el("td", {}, s.state === "queued" ? "waiting" : "");
  const p = s.progress;
  return el("td", { class: "num" },
            el("progress", { max: Math.max(1, p.total_jobs), value: p.finished_jobs }),
            p.finished_jobs + " of " + p.total_jobs + " jobs");
}

function drawSimulations(list) {
  const rows = list.slice().reverse().slice(0, 50).map((s) => {
    const took = s.started_at === null ? null
      : (s.finished_at === null ? Date.now() / 1000 : s.finished_at) - s.started_at;
    const view = el("button", { type: "button", "data-sim": s.id },
                    s.state === "succeeded" ? "report" : "follow");
    view.addEventListener("click", () => showSimulation(s.id));
    return el("tr", { "data-sim": s.id, class: s.id === sim.shown ? "shown" : "" },
      el("td", { class: "mono" }, s.id),
      el("td", {}, s.trace), el("td", {}, s.pool), el("td", {}, s.policy),
      el("td", {}, el("span", { class: "state sim state-" + s.state }, s.state)),
      progressCell(s),
      el("td", {}, new Date(s.submitted_at * 1000).toTimeString().slice(0, 8)),
      el("td", { class: "num" }, duration(took)),
      s.error ? el("td", { class: "error" }, s.error) : el("td", {}, view));
  });
  if (!rows.length) {
    rows.push(el("tr", {}, el("td", { colspan: 9, class: "empty" }, "no simulations yet")));
  }
  document.querySelector("#simulations tbody").replaceChildren(...rows);
}

// summary.md's table (label | value, with units) as a table; its other lines as notes.
function reportBody(markdown) {
  const rows = [], notes = [];
  let title = null;
  for (const line of (markdown || "").split("\n")) {
    if (line.startsWith("# ")) title = line.slice(2);
    else if (/^\|[-| ]+\|$/.test(line)) continue;  // the header's rule
    else if (line.startsWith("|")) rows.push(line.split("|").slice(1, -1).map((c) => c.trim()));
    else if (line.trim()) notes.push(line.trim());
  }
  const [head, ...body] = rows;
  const table = el("table", { class: "metrics" },
    el("thead", {}, el("tr", {}, ...(head || []).map((c) => el("th", {}, c)))),
    el("tbody", {}, ...body.map((r) => el("tr", { "data-metric": r[0] },
      el("td", {}, r[0]), el("td", { class: "num" }, r[1])))));
  return { title, table, notes: notes.map((n) => el("p", { class: "notes" }, n)) };
}

async function drawSimulation(s) {
  const box = document.getElementById("sim-report");
  box.hidden = false;
  box.dataset.sim = s.id;
  box.dataset.state = s.state;
  if (s.state !== "succeeded") {
    const p = s.progress;
    box.replaceChildren(el("h3", {}, s.id + ": " + s.policy + " on " + s.trace + " (" +
                           s.pool + ")"),
      el("p", {}, s.state + (p ? ": " + p.finished_jobs + " of " + p.total_jobs +
                             " jobs finished, " + duration(p.simulated_seconds) +
                             " simulated" : "") + (s.error ? ": " + s.error : "")));
    if (SIM_TERMINAL.has(s.state)) sim.report = s.id;
    return;
  }
  const { title, table, notes } = reportBody(s.report_markdown);
  const plots = el("div", { class: "plots" });
  box.replaceChildren(el("h3", {}, s.id + ": " + (title || s.policy + " on " + s.trace)),
                      table, ...notes, plots);
  sim.report = s.id;
  for (const name of s.plots) {  // one at a time: a plot the API lost is only left out
    try {
      const url = await api("/v1/simulations/" + s.id + "/plots/" + name, undefined, "dataurl");
      plots.append(el("img", { src: url, alt: name.replace(".png", "") + " of " + s.id,
                               "data-plot": name }));
    } catch (e) {
      if (e instanceof Unauthorized) throw e;
      plots.append(el("p", { class: "notes" }, name + ": " + String(e.message || e)));
    }
  }
}

async function refreshSimulations() {
  if (!sim.choices) await loadChoices();
  drawSimulations(await api("/v1/simulations"));
  if (sim.shown && sim.report !== sim.shown) {
    let shown;
    try {
      shown = await api("/v1/simulations/" + sim.shown);
    } catch (e) {
      if (e instanceof Refused && e.status === 404) sim.shown = null;  // gone (the oldest go)
      throw e;
    }
    await drawSimulation(shown);
  }
}

// --- the loop ---------------------------------------------------------------------------------

async function refresh() {
  clearTimeout(timer);
  const hours = Number(document.getElementById("window").value);
  const now = Date.now() / 1000;
  const since = now - hours * 3600;
  try {
    const [pool, jobs, attempts, health, services] = await Promise.all([
      api("/v1/pool"), api("/v1/jobs"), api("/v1/history?since=" + Math.floor(since)),
      mlflowUi === undefined ? api("/v1/health") : null, api("/v1/services")]);
    if (health) mlflowUi = typeof health.mlflow_ui === "string" ? health.mlflow_ui : null;
    document.getElementById("main").hidden = false;
    document.getElementById("forget").hidden = false;
    document.getElementById("login").hidden = true;
    drawPool(pool, jobs);
    drawJobs(jobs, since);
    drawServices(services);
    // Start the chart at the oldest thing in it (at least 2 minutes back), not hours of
    // empty space before a fresh pool's first job.
    const oldest = Math.min(now - 120, ...attempts.map((a) => a.started_at),
                            ...jobs.filter((j) => ACTIVE.has(j.state)).map((j) => j.submitted_at));
    drawGantt(pool, jobs, attempts, Math.max(since, oldest), now);
    drawUtilisation(pool, attempts, Math.max(since, oldest), now);
    await refreshSimulations();
    setStatus("updated " + new Date().toTimeString().slice(0, 8));
  } catch (error) {
    if (error instanceof Unauthorized) { askForToken(error.message); return; }
    setStatus(String(error.message || error), true);
  }
  clearTimeout(timer);  // one loop, even when a click refreshed while a refresh was out
  timer = setTimeout(refresh, POLL_MS);
}

function start() {
  takeTokenFromFragment();
  document.getElementById("login").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = document.getElementById("token");
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    input.value = "";
    refresh();
  });
  document.getElementById("forget").addEventListener("click", () => askForToken(""));
  document.getElementById("window").addEventListener("change", refresh);
  document.getElementById("simulate").addEventListener("submit", submitSimulation);
  document.getElementById("sim-trace").addEventListener("change", (event) => {
    const pool = poolFor(event.target.value);
    if (pool && sim.choices && sim.choices.pools.includes(pool)) {
      document.getElementById("sim-pool").value = pool;
    }
  });
  if (token()) refresh(); else askForToken("");
}

start();
