// ami-edge fleet dashboard: plain JavaScript, no libraries, no build step.
// Every value from the API goes into the DOM as text (textContent / SVG attributes), never as
// HTML: meter ids and messages come from the field.
"use strict";

const ENERGY = "1.0.1.8.0.255";
const SVG = "http://www.w3.org/2000/svg";
const KEY_STORE = "ami-edge.api-key";
const params = new URLSearchParams(location.search);
const WINDOW_DAYS = Math.min(31, Math.max(1, Number(params.get("days")) || 7));

let apiKey = "";
let fleet = [];
let selected = "";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c ?? "")));
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

function svgText(x, y, text, anchor) {
  const t = svg("text", { x, y, "text-anchor": anchor || "start" });
  t.textContent = text;
  return t;
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path) {
  const resp = await fetch(path, { headers: { "x-api-key": apiKey } });
  let body = null;
  try { body = await resp.json(); } catch (e) { body = null; }
  if (!resp.ok) {
    const msg = body && body.error ? body.error.message : resp.statusText;
    throw new ApiError(resp.status, msg);
  }
  return body;
}

function isoNoSeconds(s) { return s ? s.replace("T", " ").replace(/:\d\dZ$/, "") : "—"; }

function setStatus(text, cls) {
  const s = document.getElementById("status");
  s.textContent = text;
  s.className = cls || "muted";
}

// --- API key -----------------------------------------------------------------------------

function initKey() {
  const fromUrl = params.get("key");
  if (fromUrl) {
    localStorage.setItem(KEY_STORE, fromUrl);
    params.delete("key");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? "?" + rest : ""));
  }
  apiKey = localStorage.getItem(KEY_STORE) || "";
}

function askKey(message) {
  document.getElementById("main").hidden = true;
  document.getElementById("key-form").hidden = false;
  setStatus(message || "an API key is needed", "warn");
}

// --- fleet -------------------------------------------------------------------------------

function renderFleet() {
  const tbody = document.querySelector("#fleet tbody");
  tbody.replaceChildren();
  for (const m of fleet) {
    const energy = m.energy_import ? (m.energy_import.unit === "Wh"
      ? (m.energy_import.value / 1000).toFixed(3) : `${m.energy_import.value} ${m.energy_import.unit}`) : "—";
    const power = m.outage
      ? el("span", { class: "bad" }, `outage since ${isoNoSeconds(m.outage.start)}`)
      : el("span", { class: "ok" }, "on");
    const anomalies = m.open_anomalies
      ? el("span", { class: "warn" }, String(m.open_anomalies)) : "0";
    const tr = el("tr", { "data-meter": m.meter },
      el("td", {}, m.meter), el("td", {}, m.thing || "—"), el("td", {}, isoNoSeconds(m.last_read)),
      el("td", { class: "num" }, energy), el("td", {}, power), el("td", { class: "num" }, anomalies));
    if (m.meter === selected) tr.classList.add("selected");
    tr.addEventListener("click", () => selectMeter(m.meter));
    tbody.append(tr);
  }
  const sel = document.getElementById("meter-select");
  sel.replaceChildren(...fleet.map((m) => el("option", { value: m.meter }, m.meter)));
  sel.value = selected;
}

async function selectMeter(meter) {
  selected = meter;
  for (const tr of document.querySelectorAll("#fleet tbody tr")) {
    tr.classList.toggle("selected", tr.dataset.meter === meter);
  }
  document.getElementById("meter-select").value = meter;
  await loadCurve(meter);
}

// --- load curve --------------------------------------------------------------------------

// Interval energy from cumulative register captures: the difference of two captures 15 min
// apart is the energy of that interval. A gap (missing capture) or a register going backwards
// (meter exchange, reset) yields no point rather than a wrong one.
function intervalEnergy(rows) {
  const points = [];
  for (let i = 1; i < rows.length; i++) {
    const dt = rows[i].epoch - rows[i - 1].epoch;
    const de = rows[i].value - rows[i - 1].value;
    if (dt === 900 && de >= 0) points.push({ t: rows[i].epoch, kwh: rows[i].unit === "Wh" ? de / 1000 : de });
  }
  return points;
}

function drawCurve(container, points) {
  container.replaceChildren();
  if (points.length === 0) {
    container.append(el("p", { class: "muted" }, "no consecutive +A captures in the last days"));
    return;
  }
  const W = 720, H = 220, L = 48, R = 10, T = 10, B = 28;
  const t0 = points[0].t, t1 = points[points.length - 1].t;
  const ymax = Math.max(...points.map((p) => p.kwh)) || 1;
  const x = (t) => L + (t1 === t0 ? 0 : (t - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => H - B - (v / ymax) * (H - T - B);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "load curve" });
  root.append(svg("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }));
  root.append(svg("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }));
  const area = points.map((p) => `${x(p.t).toFixed(1)},${y(p.kwh).toFixed(1)}`);
  root.append(svg("polygon", { class: "bar", points: `${x(t0)},${y(0)} ${area.join(" ")} ${x(t1)},${y(0)}` }));
  root.append(svg("polyline", { class: "curve", points: area.join(" "), "data-points": points.length }));
  root.append(svgText(L - 4, T + 8, ymax.toFixed(3), "end"));
  root.append(svgText(L - 4, H - B, "0", "end"));
  root.append(svgText(L, H - 8, isoNoSeconds(new Date(t0 * 1000).toISOString().replace(/\.\d+Z$/, "Z"))));
  root.append(svgText(W - R, H - 8, isoNoSeconds(new Date(t1 * 1000).toISOString().replace(/\.\d+Z$/, "Z")), "end"));
  root.append(svgText(L + 4, T + 8, "kWh / 15 min"));
  container.append(root);
}

async function loadCurve(meter) {
  const box = document.getElementById("load-curve");
  const m = fleet.find((f) => f.meter === meter);
  if (!m || !m.last_read_epoch) {
    drawCurve(box, []);
    return;
  }
  // two days of intervals: one capture more than intervals (the first one is the baseline)
  const to = m.last_read_epoch + 900;
  const from = to - 2 * 86400 - 900;
  const q = new URLSearchParams({
    from: new Date(from * 1000).toISOString(), to: new Date(to * 1000).toISOString(), channel: ENERGY,
  });
  const data = await api(`/v1/meters/${encodeURIComponent(meter)}/intervals?${q}`);
  if (meter !== selected) return;  // another meter was selected meanwhile: its curve wins
  drawCurve(box, intervalEnergy(data.rows));
}

// --- alarms and outages ------------------------------------------------------------------

function drawTimeline(container, windowFrom, to, alarms, outages) {
  container.replaceChildren();
  // zoom to what happened: from the earliest alarm or outage start in the window (5% margin)
  const starts = alarms.map((a) => a.epoch).concat(outages.map((o) => Date.parse(o.start) / 1000))
    .filter((t) => t >= windowFrom);
  const first = starts.length ? Math.min(...starts) : windowFrom;
  const from = Math.max(windowFrom, first - (to - first) * 0.05);
  const W = 720, H = 90, L = 10, R = 10;
  const x = (t) => L + Math.min(1, Math.max(0, (t - from) / (to - from))) * (W - L - R);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "alarm timeline" });
  root.append(svg("line", { class: "axis", x1: L, y1: 60, x2: W - R, y2: 60 }));
  for (const o of outages) {
    const s = Date.parse(o.start) / 1000;
    const e = o.end ? Date.parse(o.end) / 1000 : to;
    if (e < from || s > to) continue;
    const rect = svg("rect", { class: "outage", x: x(s), y: 10, width: Math.max(2, x(e) - x(s)), height: 20 });
    const title = svg("title");
    title.textContent = `${o.kind} ${o.key} ${o.start} – ${o.end || "ongoing"}`;
    rect.append(title);
    root.append(rect);
  }
  for (const a of alarms) {
    const c = svg("circle", { class: a.kind === "alarm" ? "alarm" : "event", cx: x(a.epoch), cy: 45, r: 4 });
    const title = svg("title");
    title.textContent = `${a.time} ${a.type} ${a.meter || a.thing}`;
    c.append(title);
    root.append(c);
  }
  root.append(svgText(L, 78, isoNoSeconds(new Date(from * 1000).toISOString().replace(/\.\d+Z$/, "Z"))));
  root.append(svgText(W - R, 78, isoNoSeconds(new Date(to * 1000).toISOString().replace(/\.\d+Z$/, "Z")), "end"));
  container.append(root);
}

async function loadTimeline(from, to) {
  const q = new URLSearchParams({
    from: new Date(from * 1000).toISOString(), to: new Date(to * 1000).toISOString(),
  });
  const [alarms, current, past] = await Promise.all([
    api(`/v1/alarms?${q}`), api("/v1/outages?state=current"), api("/v1/outages?state=past"),
  ]);
  drawTimeline(document.getElementById("timeline"), from, to, alarms.alarms,
    current.outages.concat(past.outages));
  const tbody = document.querySelector("#alarms tbody");
  tbody.replaceChildren(...alarms.alarms.slice().reverse().map((a) => el("tr", { "data-id": a.id },
    el("td", {}, isoNoSeconds(a.time)),
    el("td", { class: a.kind === "alarm" ? "bad" : "warn" }, a.type),
    el("td", {}, a.thing), el("td", {}, a.meter || "—"))));
}

// --- anomalies ---------------------------------------------------------------------------

async function loadAnomalies(from, to) {
  const q = new URLSearchParams({
    from: new Date(from * 1000).toISOString(), to: new Date(to * 1000).toISOString(),
  });
  const data = await api(`/v1/anomalies?${q}`);
  const tbody = document.querySelector("#anomalies tbody");
  tbody.replaceChildren(...data.anomalies.slice().reverse().map((a) => {
    const ratio = a.threshold ? Math.min(3, a.score / a.threshold) : 1;
    return el("tr", { "data-id": a.id },
      el("td", {}, a.day || isoNoSeconds(a.time)), el("td", {}, a.meter), el("td", {}, a.kind),
      el("td", { class: "num" }, el("span", { class: "scorebar", style: `width:${(ratio * 20).toFixed(0)}px` }),
        Number(a.score).toFixed(3)),
      el("td", { class: "num" }, a.threshold == null ? "—" : Number(a.threshold).toFixed(3)),
      el("td", { class: "reason" }, a.reason || ""));
  }));
}

// --- concentrator health -----------------------------------------------------------------

function sparkline(values, label) {
  const W = 240, H = 40;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label, class: "spark" });
  const nums = values.filter((v) => v != null);
  if (nums.length < 2) return root;
  const max = Math.max(...nums) || 1;
  const pts = values.map((v, i) => v == null ? null
    : `${(i / (values.length - 1) * (W - 2) + 1).toFixed(1)},${(H - 2 - (v / max) * (H - 4)).toFixed(1)}`)
    .filter((p) => p);
  root.append(svg("polyline", { class: "curve", points: pts.join(" ") }));
  return root;
}

async function loadHealth(from, to) {
  const box = document.getElementById("health");
  const things = [...new Set(fleet.map((m) => m.thing).filter((t) => t))].sort();
  const q = new URLSearchParams({
    from: new Date(from * 1000).toISOString(), to: new Date(to * 1000).toISOString(),
  });
  const parts = await Promise.all(things.map(async (thing) => {
    let data;
    try {
      data = await api(`/v1/dcus/${encodeURIComponent(thing)}/health?${q}`);
    } catch (e) {
      if (e.status === 404) return el("div", { class: "dcu", "data-thing": thing }, el("strong", {}, thing),
        " ", el("span", { class: "muted" }, "no health report yet"));
      throw e;
    }
    const r = data.latest.report;
    const lat = (r.latency || {});
    const ms = (lane, q) => lat[lane] && lat[lane][q] != null ? `${Number(lat[lane][q]).toFixed(0)} ms` : "—";
    const connected = r.connected === false ? el("span", { class: "bad" }, "disconnected")
      : el("span", { class: "ok" }, r.connected ? "connected" : "unknown");
    return el("div", { class: "dcu", "data-thing": thing },
      el("strong", {}, thing), " ", connected,
      el("dl", {},
        el("dt", {}, "reported"), el("dd", {}, isoNoSeconds(data.latest.time)),
        el("dt", {}, "spool backlog"), el("dd", { class: "backlog" },
          `${r.backlog_readings ?? "—"} readings, ${r.backlog_messages ?? "—"} messages`,
          r.backlog_age_s != null ? `, oldest ${Number(r.backlog_age_s).toFixed(0)} s` : ""),
        el("dt", {}, "publish latency"), el("dd", {}, `bulk p50 ${ms("bulk", "p50_ms")} / p99 ${ms("bulk", "p99_ms")}, `
          + `alarm p50 ${ms("alarm", "p50_ms")} / p99 ${ms("alarm", "p99_ms")}`),
        el("dt", {}, "published"), el("dd", {}, `${r.published_messages ?? "—"} messages, ${r.publish_errors ?? 0} errors`),
        el("dt", {}, "backlog history"), el("dd", {}, sparkline(data.history.map((h) => h.backlog_readings), "backlog history"))));
  }));
  box.replaceChildren(...(parts.length ? parts : [el("p", { class: "muted" }, "no concentrator known")]));
}

// --- main --------------------------------------------------------------------------------

async function refresh() {
  document.body.dataset.ready = "0";
  setStatus("loading…");
  try {
    const data = await api("/v1/fleet");
    fleet = data.meters;
    if (!fleet.some((m) => m.meter === selected)) selected = fleet.length ? fleet[0].meter : "";
    document.getElementById("key-form").hidden = true;
    document.getElementById("main").hidden = false;
    renderFleet();
    const to = Math.floor(Date.now() / 1000) + 60;
    const from = to - WINDOW_DAYS * 86400;
    await Promise.all([
      selected ? loadCurve(selected) : Promise.resolve(),
      loadTimeline(from, to), loadAnomalies(from, to), loadHealth(from, to),
    ]);
    setStatus(`${fleet.length} meters · updated ${new Date().toISOString().slice(11, 19)} UTC`);
    document.body.dataset.ready = "1";
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      askKey(apiKey ? "the API key was refused" : "an API key is needed");
    } else {
      setStatus(`error: ${e.message}`, "bad");
    }
    document.body.dataset.ready = "error";
  }
}

document.getElementById("key-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  apiKey = document.getElementById("key-input").value.trim();
  localStorage.setItem(KEY_STORE, apiKey);
  refresh();
});
document.getElementById("forget-key").addEventListener("click", () => {
  localStorage.removeItem(KEY_STORE);
  apiKey = "";
  askKey("enter an API key");
});
document.getElementById("refresh").addEventListener("click", refresh);
document.getElementById("meter-select").addEventListener("change", (ev) => selectMeter(ev.target.value));

initKey();
refresh();  // a stack without a key answers; one with a key answers 401 and the form shows
