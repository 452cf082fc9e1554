// Salon dashboard: one snapshot, then live `snapshot` events over one EventSource.
// Every text that comes from the gateway (and so from Matrix) goes in with
// textContent / createTextNode: never innerHTML, so a message body is never HTML.
"use strict";

const API = "/api/v1/dashboard";
const SVG = "http://www.w3.org/2000/svg";
const state = { csrf: null, snap: null, source: null };

// Extra panels: name in the snapshot → function(section, value). A panel's section
// (<section data-section="name">) is shown only while the snapshot has that key.
// The approvals panel plugs in here once the API has approvals.
const PANELS = {};

// --- small DOM helpers --------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, String(value));
    else node[key] = value;
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svgEl(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function pill(value) {
  return el("span", { class: `pill st-${value}` }, value);
}

function $(id) { return document.getElementById(id); }

function fmtMs(ms) {
  if (ms === null || ms === undefined) return "–";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${(ms / 60000).toFixed(1)} min`;
}

function ago(ts, now) {
  if (!ts) return "never";
  const s = Math.max(0, Math.round((now - ts) / 1000));
  if (s < 90) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

function clock(ts) {
  return ts ? new Date(ts).toLocaleTimeString([], { hour12: false }) : "–";
}

function bytes(n) {
  if (n === null || n === undefined) return "unknown";
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

// --- talking to the gateway -----------------------------------------------------------

async function post(path, body) {
  const headers = { "Content-Type": "application/json" };
  if (state.csrf) headers["X-CSRF-Token"] = state.csrf;
  const response = await fetch(API + path, {
    method: "POST", headers, credentials: "same-origin", body: JSON.stringify(body || {}),
  });
  const data = await response.json().catch(() => ({}));
  return { ok: response.ok, status: response.status, data };
}

async function start() {
  const response = await fetch(`${API}/session`, { credentials: "same-origin" }).catch(() => null);
  if (response === null) { setTimeout(start, 2000); return; }
  if (response.status === 401) { showLogin(); return; }
  const data = await response.json();
  state.csrf = data.csrf;
  $("gateway-name").textContent = data.gateway || "";
  $("login").hidden = true;
  $("board").hidden = false;
  $("nav").hidden = false;
  $("logout").hidden = false;
  connect();
}

function connect() {
  if (state.source) state.source.close();
  const source = new EventSource(`${API}/events`);
  state.source = source;
  source.addEventListener("open", () => {
    setLive(true);
    refresh(); // a (re)connect: the whole picture again, whatever was missed
  });
  source.addEventListener("snapshot", (event) => render(JSON.parse(event.data)));
  source.addEventListener("error", () => {
    setLive(false);
    if (source.readyState === EventSource.CLOSED) {
      // Refused (a new gateway that forgot the session?) or gone: ask again soon.
      setTimeout(start, 2000);
    }
  });
}

async function refresh() {
  const response = await fetch(`${API}/snapshot`, { credentials: "same-origin" }).catch(() => null);
  if (response && response.ok) render(await response.json());
}

function setLive(on) {
  const live = $("live");
  live.textContent = on ? "live" : "reconnecting…";
  live.className = on ? "live on" : "live off";
}

function showLogin() {
  if (state.source) state.source.close();
  $("board").hidden = true;
  $("nav").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("live").textContent = "";
  if (location.hash === "#link-used") {
    $("login-error").textContent = "That login link was already used or has expired.";
    history.replaceState(null, "", location.pathname);
  }
  $("token").focus();
}

// --- rendering ----------------------------------------------------------------------

function render(snap) {
  state.snap = snap;
  renderAgents(snap);
  renderTurns(snap);
  renderDelegations(snap);
  renderCharts(snap);
  renderOperations(snap);
  for (const section of document.querySelectorAll("section[data-section]")) {
    const name = section.dataset.section;
    const has = snap[name] !== undefined && PANELS[name] !== undefined;
    section.hidden = !has;
    const link = document.querySelector(`[data-nav="${name}"]`);
    if (link) link.hidden = !has;
    if (has) PANELS[name](section, snap[name], snap);
  }
}

function fillOptions(select, values, first) {
  const chosen = select.value;
  const options = [first, ...values.map((v) => el("option", { value: v }, v))];
  select.replaceChildren(...options);
  select.value = values.includes(chosen) ? chosen : first.value;
}

function renderAgents(snap) {
  const rows = snap.agents.map((a) => {
    const backend = [a.backend, a.model].filter(Boolean).join(" · ") || "–";
    const extra = [];
    if (a.members) extra.push(el("div", { class: "muted" }, `team: ${a.members.join(", ")}`));
    if (a.ends_at_ms) extra.push(el("div", { class: "muted" }, `session ends ${clock(a.ends_at_ms)}`));
    const room = a.room_link
      ? el("a", { href: a.room_link, target: "_blank", rel: "noopener noreferrer" }, a.room_alias || a.room_id)
      : "–";
    return el("tr", { "data-agent": a.id, "data-status": a.status, class: a.removed ? "removed" : null },
      el("th", { scope: "row" }, a.label || a.id, el("div", { class: "muted" }, a.id)),
      el("td", { class: "status" }, pill(a.status), a.removed ? el("div", { class: "muted" }, "removed") : null,
        a.status_error ? el("div", { class: "err" }, a.status_error) : null),
      el("td", { class: "num" }, ago(a.last_beat_ms, snap.now_ms)),
      el("td", {}, room),
      el("td", {}, backend, ...extra),
      el("td", { class: "num" }, `${a.in_flight} / ${a.waiting}`),
      el("td", { class: "num" }, a.replies_1h),
      el("td", { class: "num" }, `${fmtMs(a.p50_ms)} / ${fmtMs(a.p95_ms)}`),
      el("td", { class: a.errors_1h ? "num bad" : "num" }, a.errors_1h));
  });
  $("agents-table").tBodies[0].replaceChildren(...rows);
  const online = snap.agents.filter((a) => a.status !== "offline").length;
  $("agents-count").textContent = `${online} of ${snap.agents.length} up`;
  const ids = snap.agents.map((a) => a.id);
  fillOptions($("turn-agent"), ids, el("option", { value: "" }, "all"));
  fillOptions($("chart-agent"), ids, el("option", { value: "*" }, "all agents"));
}

function renderTurns(snap) {
  const agent = $("turn-agent").value;
  const wanted = $("turn-state").value;
  const rows = snap.turns
    .filter((t) => (!agent || t.agent === agent) && (!wanted || t.state === wanted))
    .map((t) => {
      let outcome = "";
      if (t.error) outcome = el("span", { class: "err" }, t.error);
      else if (t.state === "replied") outcome = "answered";
      else if (t.attempts > 1) outcome = `attempt ${t.attempts}`;
      const said = t.text === null ? "" : el("span", { class: "said" }, t.text);
      return el("tr", { "data-event": t.event_id, "data-agent": t.agent, "data-state": t.state },
        el("td", { class: "num" }, clock(t.created_at)),
        el("td", {}, t.kind),
        el("td", {}, t.agent),
        el("td", { class: "text" }, t.room),
        el("td", { class: "text" }, t.sender ? el("div", { class: "muted" }, t.sender) : null, said),
        el("td", {}, pill(t.state)),
        el("td", { class: "num" }, fmtMs(t.duration_ms)),
        el("td", { class: "text" }, outcome));
    });
  if (!rows.length) rows.push(el("tr", {}, el("td", { colSpan: 8, class: "muted" }, "No turns in the last hour.")));
  $("turns-table").tBodies[0].replaceChildren(...rows);
}

function renderDelegations(snap) {
  const d = snap.delegations;
  const seen = new Set();
  const rows = [...d.open, ...d.recent].filter((x) => !seen.has(x.id) && seen.add(x.id)).map((x) =>
    el("tr", { "data-delegation": x.id, "data-state": x.state },
      el("td", { class: "num" }, clock(x.created_at)),
      el("td", {}, `${x.from} → ${x.to}`),
      el("td", { class: "text" }, x.task, x.error ? el("div", { class: "err" }, x.error) : null),
      el("td", {}, pill(x.state))));
  if (!rows.length) rows.push(el("tr", {}, el("td", { colSpan: 4, class: "muted" }, "No delegations yet.")));
  $("delegations-table").tBodies[0].replaceChildren(...rows);
  drawGraph($("delegation-graph"), d.graph);
}

function outcomeClass(outcomes) {
  const bad = (outcomes.failed || 0) + (outcomes.timeout || 0) + (outcomes.rejected || 0);
  const good = outcomes.completed || 0;
  const open = outcomes.open || 0;
  if (bad >= good && bad >= open && bad > 0) return "failed";
  return good >= open ? "completed" : "open";
}

function drawGraph(svg, graph) {
  const W = 420, H = 260, R = 95, cx = W / 2, cy = H / 2;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const parts = [];
  const where = {};
  graph.nodes.forEach((name, i) => {
    const angle = (2 * Math.PI * i) / Math.max(1, graph.nodes.length) - Math.PI / 2;
    where[name] = [cx + R * Math.cos(angle), cy + R * Math.sin(angle)];
  });
  const most = Math.max(1, ...graph.edges.map((e) => e.count));
  for (const e of graph.edges) {
    const [x1, y1] = where[e.from], [x2, y2] = where[e.to];
    const len = Math.hypot(x2 - x1, y2 - y1) || 1;
    const ux = (x2 - x1) / len, uy = (y2 - y1) / len;
    const ex = x2 - ux * 22, ey = y2 - uy * 22; // stop at the node's edge
    const width = 1.5 + 6 * (e.count / most);
    const g = svgEl("g", { class: `edge ${outcomeClass(e.outcomes)}`, "data-from": e.from, "data-to": e.to, "data-count": e.count });
    const title = Object.entries(e.outcomes).map(([k, v]) => `${v} ${k}`).join(", ");
    g.append(svgEl("title", {}, `${e.from} → ${e.to}: ${title}`));
    g.append(svgEl("line", { x1, y1, x2: ex, y2: ey, "stroke-width": width }));
    const hx = ex - ux * 10, hy = ey - uy * 10;
    g.append(svgEl("polygon", {
      points: `${ex},${ey} ${hx - uy * 6},${hy + ux * 6} ${hx + uy * 6},${hy - ux * 6}`,
      class: "head",
    }));
    g.append(svgEl("text", { x: (x1 + ex) / 2 + uy * 10, y: (y1 + ey) / 2 - ux * 10, "text-anchor": "middle" }, e.count));
    parts.push(g);
  }
  for (const name of graph.nodes) {
    const [x, y] = where[name];
    const g = svgEl("g", { class: "node", "data-agent": name });
    g.append(svgEl("circle", { cx: x, cy: y, r: 20 }));
    g.append(svgEl("text", { x: x + 26, y: y + 4, "text-anchor": "start" }, name));
    parts.push(g);
  }
  if (!graph.nodes.length) {
    parts.push(svgEl("text", { x: cx, y: cy, "text-anchor": "middle", class: "muted-text" }, "no delegations yet"));
  }
  svg.replaceChildren(...parts);
}

function drawSeries(svg, values, kind, unit) {
  const W = 600, H = 170, L = 44, B = 22, T = 10;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const nums = values.filter((v) => v !== null);
  const top = Math.max(1, ...nums);
  const x = (i) => L + ((W - L - 6) * i) / values.length;
  const y = (v) => H - B - ((H - B - T) * v) / top;
  const parts = [
    svgEl("line", { x1: L, y1: H - B, x2: W, y2: H - B, class: "axis" }),
    svgEl("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }),
    svgEl("text", { x: L - 4, y: T + 10, "text-anchor": "end" }, unit(top)),
    svgEl("text", { x: L - 4, y: H - B, "text-anchor": "end" }, "0"),
    svgEl("text", { x: L, y: H - 4 }, "60 min ago"),
    svgEl("text", { x: W - 4, y: H - 4, "text-anchor": "end" }, "now"),
  ];
  const step = (W - L - 6) / values.length;
  if (kind === "bars") {
    values.forEach((v, i) => {
      if (v > 0) parts.push(svgEl("rect", { x: x(i) + 1, y: y(v), width: Math.max(1, step - 2), height: H - B - y(v), class: "bar" }, undefined));
    });
  } else {
    const points = values.map((v, i) => (v === null ? null : `${x(i) + step / 2},${y(v)}`)).filter(Boolean);
    if (points.length > 1) parts.push(svgEl("polyline", { points: points.join(" "), class: "line" }));
    for (const p of points) {
      const [px, py] = p.split(",");
      parts.push(svgEl("circle", { cx: px, cy: py, r: 2.5, class: "bar" }));
    }
  }
  if (!nums.some((v) => v > 0)) {
    parts.push(svgEl("text", { x: (W + L) / 2, y: H / 2, "text-anchor": "middle", class: "muted-text" }, "nothing yet"));
  }
  svg.replaceChildren(...parts);
}

function renderCharts(snap) {
  const key = $("chart-agent").value || "*";
  const c = snap.charts;
  const zero = new Array(60).fill(0);
  drawSeries($("chart-turns"), c.turns_per_minute[key] || zero, "bars", (v) => String(v));
  drawSeries($("chart-reply"), c.reply_ms[key] || zero.map(() => null), "line", fmtMs);
}

function reloadText(r) {
  if (!r) return "none since the store was made";
  const when = clock(r.at_ms);
  if (!r.ok) return `refused at ${when}: ${r.error}`;
  const restart = r.needs_restart && r.needs_restart.length ? `; needs a restart for ${r.needs_restart.join(", ")}` : "";
  const changes = [["added", r.added], ["removed", r.removed], ["changed", r.changed]]
    .filter(([, v]) => v && v.length).map(([k, v]) => `${k} ${v.join(", ")}`).join("; ");
  return `applied at ${when}${changes ? ` (${changes})` : " (no change)"}${restart}`;
}

function renderOperations(snap) {
  const ops = snap.operations;
  const restarting = ops.loops.filter((l) => l.backing_off).length;
  const facts = [
    ["Gateway", ops.gateway], ["Version", ops.version], ["Store size", bytes(ops.store_size_bytes)],
    ["Loops", `${ops.loops.length} (${restarting} restarting)`], ["Last reload", reloadText(ops.reload)],
  ];
  $("ops").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", { "data-fact": k }, v)]));
  $("reload").hidden = !ops.can_reload;
  const rows = ops.loops.map((l) =>
    el("tr", { "data-loop": l.name },
      el("td", {}, l.name),
      el("td", {}, pill(l.backing_off ? "busy" : l.running ? "online" : "offline")),
      el("td", { class: "num" }, l.restarts),
      el("td", { class: "err" }, l.last_error || "")));
  $("loops-table").tBodies[0].replaceChildren(...rows);
  // Open by itself while a loop is in trouble.
  if (restarting || ops.loops.some((l) => !l.running)) $("loops").open = true;
}

// --- controls -----------------------------------------------------------------------

function applyTheme(theme) {
  if (theme) document.documentElement.dataset.theme = theme;
  else delete document.documentElement.dataset.theme;
  const dark = theme ? theme === "dark" : matchMedia("(prefers-color-scheme: dark)").matches;
  $("theme").setAttribute("aria-pressed", String(dark));
  $("theme").textContent = dark ? "Light theme" : "Dark theme";
}

document.addEventListener("DOMContentLoaded", () => {
  applyTheme(localStorage.getItem("salon-theme"));
  $("theme").addEventListener("click", () => {
    const dark = $("theme").getAttribute("aria-pressed") === "true";
    const next = dark ? "light" : "dark";
    localStorage.setItem("salon-theme", next);
    applyTheme(next);
  });
  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const result = await post("/login", { token: $("token").value });
    if (result.ok) { $("token").value = ""; $("login-error").textContent = ""; start(); }
    else $("login-error").textContent = (result.data.error && result.data.error.message) || "Login failed.";
  });
  $("logout").addEventListener("click", async () => { await post("/logout"); state.csrf = null; showLogin(); });
  $("reload").addEventListener("click", async () => {
    $("reload-result").textContent = "reloading…";
    const result = await post("/reload");
    $("reload-result").textContent = result.ok ? reloadText(result.data) : `failed: ${result.data.error ? result.data.error.message : result.status}`;
  });
  for (const id of ["turn-agent", "turn-state"]) $(id).addEventListener("change", () => state.snap && renderTurns(state.snap));
  $("chart-agent").addEventListener("change", () => state.snap && renderCharts(state.snap));
  start();
});

window.SalonDashboard = { PANELS, post, refresh, el, pill, clock, ago, fmtMs };
