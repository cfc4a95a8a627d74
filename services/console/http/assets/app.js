// payonce console: renders each view the server streams (server-sent
// events) and sends the dev-mode actions. Plain JavaScript, no build step.
"use strict";

const $ = (sel) => document.querySelector(sel);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
const colors = ["#2563eb", "#d97706", "#059669", "#9333ea", "#dc2626", "#0891b2", "#65a30d", "#db2777"];
const short = (id) => esc(String(id || "").slice(0, 8));
const arr = (x) => x || [];
const money = (n, cur) => esc((n / 100).toFixed(2) + " " + (cur || ""));

let view = null;
let updates = [];
// Render times, for the load program (bench/console) to read.
window.consoleStats = {renders: 0, totalMs: 0, maxMs: 0, views: 0};

function setNotice(text, bad) {
  const n = $("#notice");
  n.textContent = text;
  n.className = bad ? "bad" : "muted";
}

async function act(path, body) {
  try {
    const resp = await fetch(path, {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body || {})});
    const data = await resp.json().catch(() => ({}));
    if (!resp.ok) {
      setNotice(path + ": " + (data.detail || resp.status), true);
      return null;
    }
    setNotice(path + ": done", false);
    return data;
  } catch (e) {
    setNotice(path + ": " + e.message, true);
    return null;
  }
}

// rows sets a table body's rows, touching only the rows whose HTML changed:
// a view arrives every half second and most rows stay as they were, and
// rebuilding every table each time kept the page's main thread busy under
// load (bench/console).
function rows(tbody, html) {
  const el = $(tbody);
  const prev = el.renderedRows || [];
  if (prev.length !== html.length) {
    el.innerHTML = html.join("");
  } else {
    for (let i = 0; i < html.length; i++) {
      if (html[i] !== prev[i]) el.children[i].outerHTML = html[i];
    }
  }
  el.renderedRows = html;
}

function renderRaft(v) {
  $("#leader").textContent = v.leader_id || "none";
  rows("#raft tbody", arr(v.coordinators).map((n) => {
    if (!n.up) return `<tr class="down"><td>${esc(n.url)}</td><td colspan="6">not answering</td></tr>`;
    return `<tr class="${n.state === "Leader" ? "leader" : ""}" data-node="${esc(n.id)}"><td>${esc(n.id)}</td><td>${esc(n.state)}</td>` +
      `<td>${n.term}</td><td>${n.last_log_index}</td><td>${n.commit_index}</td><td>${n.applied_index}</td><td>${esc((n.voters || []).join(" "))}</td></tr>`;
  }));
  const stopped = (v.processes || []).filter((p) => p.name.startsWith("coordinator-") && !p.running);
  $("#restart-coordinators").innerHTML = stopped.map((p) => `<button data-start="${esc(p.name)}">Restart ${esc(p.name)}</button>`).join(" ");
}

function arc(cx, cy, r0, r1, a0, a1) {
  const p = (r, a) => [cx + r * Math.sin(a), cy - r * Math.cos(a)].map((x) => x.toFixed(2)).join(" ");
  const large = a1 - a0 > Math.PI ? 1 : 0;
  return `M${p(r1, a0)}A${r1} ${r1} 0 ${large} 1 ${p(r1, a1)}L${p(r0, a1)}A${r0} ${r0} 0 ${large} 0 ${p(r0, a0)}Z`;
}

function renderRing(rv, processes) {
  const owners = arr(rv.owners);
  const n = owners.length;
  const moved = new Set(rv.moved || []);
  let paths = "";
  // One path per run of adjacent slots with the same owner (and the same
  // moved flag): a few dozen elements instead of one per slot.
  for (let i = 0; i < n;) {
    let j = i;
    while (j + 1 < n && owners[j + 1] === owners[i] && moved.has(j + 1) === moved.has(i)) j++;
    const a0 = (2 * Math.PI * i) / n, a1 = (2 * Math.PI * (j + 1)) / n;
    paths += `<path d="${arc(95, 95, 55, 90, a0, a1)}" fill="${colors[owners[i] % colors.length]}"${moved.has(i) ? ' class="moved"' : ""}></path>`;
    i = j + 1;
  }
  const byName = Object.fromEntries((processes || []).map((p) => [p.name, p]));
  const members = arr(rv.members).map((m, i) => {
    const p = byName[m.name];
    const buttons = rv.service === "payments" || rv.service === "orders"
      ? ` <button class="dev-btn" data-stop="${esc(m.name)}">stop</button> <button class="dev-btn" data-pause="${esc(m.name)}">pause past lease</button>` : "";
    return `<div class="member" data-member="${esc(m.name)}"${p && p.paused ? ` data-paused="${esc(m.name)}"` : ""}><span class="swatch" style="background:${colors[i % colors.length]}"></span>` +
      `${esc(m.name)} · ${m.slots} slots${p && p.paused ? " · <b>paused</b>" : ""}${view.dev_mode && view.control ? buttons : ""}</div>`;
  }).join("");
  const onRing = new Set(arr(rv.members).map((m) => m.name));
  const gone = (processes || []).filter((p) => p.name.startsWith(rv.service + "-") && !p.running)
    .map((p) => `<div class="member-down">${esc(p.name)} · stopped ${view.dev_mode ? `<button data-start="${esc(p.name)}">start</button>` : ""}</div>`).join("");
  // A frozen instance cannot renew its membership (or its leases): it falls
  // off the ring while it sleeps, and comes back when it wakes.
  const frozen = (processes || []).filter((p) => p.name.startsWith(rv.service + "-") && p.running && p.paused && !onRing.has(p.name))
    .map((p) => `<div class="member-down" data-paused="${esc(p.name)}">${esc(p.name)} · <b>paused</b>: its membership and leases lapsed</div>`).join("");
  return `<div class="ring" id="ring-${esc(rv.service)}"><svg viewBox="0 0 190 190" role="img" aria-label="${esc(rv.service)} ring">${paths}` +
    `<text x="95" y="92" text-anchor="middle" font-size="13">${esc(rv.service)}</text>` +
    `<text x="95" y="108" text-anchor="middle" font-size="10" fill="#6b7280">${n} slots · v${rv.version}</text></svg>` +
    `<div class="legend">${members}${gone}${frozen}${moved.size ? `<div class="muted">${moved.size} slots moved</div>` : ""}</div></div>`;
}

// The rings are the page's heaviest drawing (a path per run of slots) and
// change only with the membership: redraw them only when what they show did.
let ringsKey = "";
function renderRings(v) {
  const key = JSON.stringify([v.dev_mode, v.control, arr(v.rings).map((rv) => [rv.fingerprint, rv.moved_at, arr(rv.moved).length]),
    arr(v.processes).map((p) => [p.name, p.running, p.paused])]);
  if (key === ringsKey) return;
  ringsKey = key;
  $("#rings").className = "rings";
  $("#rings").innerHTML = arr(v.rings).map((rv) => renderRing(rv, v.processes)).join("");
}

// The payments partitions' leases: one small cell per partition, in
// partition order, in the colour of its holder on the payments ring, with
// its fencing token and a bar for the TTL it has left; above them, one line
// per holder. 64 rows of a table would push everything else off the screen.
let lookedUp = -1; // the partition of the customer looked up last
function renderLeases(v) {
  const parts = arr(v.partitions);
  $("#leases-section").hidden = parts.length === 0;
  if (parts.length === 0) return;
  const ring = arr(v.rings).find((rv) => rv.service === "payments");
  const index = Object.fromEntries(arr(ring && ring.members).map((m, i) => [m.name, i]));
  const color = (holder) => {
    const i = index[holder.slice(holder.lastIndexOf("/") + 1)];
    return i === undefined ? "#6b7280" : colors[i % colors.length];
  };
  const byHolder = {};
  rows("#leases", parts.map((l) => {
    const mark = l.p === lookedUp ? " looked-up" : "";
    if (!l.holder) return `<div class="lease free${mark}" data-partition="${l.p}" title="payments-partition-${l.p}: free">${l.p}<span>free</span></div>`;
    const h = byHolder[l.holder] ||= {n: 0, min: Infinity, max: 0, left: Infinity};
    h.n++; h.min = Math.min(h.min, l.token); h.max = Math.max(h.max, l.token); h.left = Math.min(h.left, l.remaining_ms);
    const c = color(l.holder);
    const w = l.ttl_ms ? Math.round((100 * l.remaining_ms) / l.ttl_ms) : 0;
    return `<div class="lease${mark}" data-partition="${l.p}" data-holder="${esc(l.holder)}" data-token="${l.token}" style="border-color:${c}" ` +
      `title="payments-partition-${l.p}: ${esc(l.holder)}, token ${l.token}, ${(l.remaining_ms / 1000).toFixed(1)} s left${l.waiters ? `, ${l.waiters} waiting` : ""}">` +
      `${l.p}<span>${l.token}</span><i style="width:${w}%;background:${c}"></i></div>`;
  }));
  const free = parts.filter((l) => !l.holder).length;
  rows("#lease-holders", Object.keys(byHolder).sort().map((name) => {
    const h = byHolder[name];
    return `<div data-lease-holder="${esc(name)}"><span class="swatch" style="background:${color(name)}"></span><b>${esc(name)}</b>: ${h.n} partitions, ` +
      `tokens ${h.min}–${h.max}, shortest TTL left ${(h.left / 1000).toFixed(1)} s</div>`;
  }).concat(free ? [`<div class="muted">${free} free: no holder until the ring's owner takes them</div>`] : []));
}

function renderLocks(v) {
  renderLeases(v);
  $("#locks").hidden = arr(v.locks).length === 0 && arr(v.partitions).length > 0;
  rows("#locks tbody", arr(v.locks).map((l) => {
    const h = l.holder || {};
    const w = h.ttl_ms ? Math.round((80 * h.remaining_ms) / h.ttl_ms) : 0;
    const left = l.released ? "released" : `<span class="ttl" style="width:${w}px"></span> ${(h.remaining_ms / 1000).toFixed(1)} s`;
    return `<tr class="${l.released ? "muted" : "held"}"><td>${esc(l.name)}</td><td>${esc(h.owner)}</td><td>${h.token ?? ""}</td>` +
      `<td>${left}</td><td>${l.waiters}</td></tr>`;
  }));
}

function renderFenceRefusals(v) {
  const fs = arr(v.fence_refusals);
  $("#fence-refusals").innerHTML = fs.length === 0
    ? `<p class="muted">No write refused by the fence yet.</p>`
    : fs.map((f, i) => `<p class="fence" data-fence-refusal="${esc(f.instance)}" data-token="${f.last_token || 0}" data-fence-token="${f.fence_token || 0}">${i === 0 ? "<b>Last write the fence refused:</b>" : "Before that:"} ` +
      `${esc(f.instance)} at ${esc(new Date(f.last_at).toLocaleTimeString())} wrote with token <b>${f.last_token}</b>, ` +
      (f.fence_token ? `but the fence had seen <b>${f.fence_token}</b>: its lease had ended and a newer holder had written. ` : `a token lower than one the fence had seen: its lease had ended. `) +
      `PostgreSQL refused it (${f.refused} refused by this instance so far).</p>`).join("");
}

function renderStorms(v) {
  rows("#storms tbody", arr(v.storms).map((s) => {
    const charges = s.charges < 0 ? "…" : `<span class="${s.charges === 1 && s.orders === 1 ? "ok" : "bad"}">${s.charges}</span>`;
    const a = s.answers;
    return `<tr data-storm="${esc(s.id)}" data-done="${s.done}"><td>${esc(s.key)}</td><td>${a.first}</td><td>${a.replayed}</td><td>${a.in_flight}</td>` +
      `<td>${a.mismatched}</td><td>${a.failed}</td><td class="${s.orders === 1 ? "ok" : "bad"}">${s.orders}</td>` +
      `<td>${short(s.order_id)} ${esc(s.order_status)}</td><td class="charges">${charges}${s.error ? ` <span class="bad">${esc(s.error)}</span>` : ""}</td></tr>`;
  }));
  rows("#idem tbody", arr(v.idempotency).map((n) =>
    `<tr><td>${esc(n.instance)}</td><td>${n.first}</td><td>${n.replayed}</td><td>${n.in_flight}</td><td>${n.mismatched}</td></tr>`));
}

function renderBank(v) {
  $("#captures").textContent = v.bank.captures;
  const f = v.bank.faults || {};
  const parts = [];
  if (f.lose_next) parts.push(`lose next ${f.lose_next}`);
  if (f.latency_ms) parts.push(`latency ${f.latency_ms} ms`);
  if (f.fail_next) parts.push(`fail next ${f.fail_next}`);
  if (f.error_rate) parts.push(`error rate ${f.error_rate}`);
  if (f.lose_response_rate) parts.push(`lose rate ${f.lose_response_rate}`);
  if ((f.decline_cards || []).length) parts.push(`declines ${f.decline_cards.join(", ")}`);
  $("#faults").textContent = parts.join("; ") || "none";
}

function traceLink(v, id) {
  if (!id) return "";
  const draw = v.traces ? ` <button data-trace="${esc(id)}" title="draw the trace here">waterfall</button>` : "";
  if (v.jaeger_url) return `<a href="${esc(v.jaeger_url)}/trace/${esc(id)}" target="_blank" rel="noopener">${short(id)}</a>${draw}`;
  return `<code title="trace id">${short(id)}</code>${draw}`;
}

function showTrace(id) {
  // An <img> runs no script, whatever the SVG holds.
  $("#waterfall").innerHTML = `<p>Trace <code>${esc(id)}</code> (spans arrive a moment after the request; click again to redraw)</p>` +
    `<img alt="waterfall of trace ${esc(id)}" src="api/traces/${esc(id)}?t=${Date.now()}">`;
}

// Redrawn only when a database's state changes, so a button is never
// replaced under the pointer between press and release.
let databasesKey = "";
function renderDatabases(v) {
  const dbs = arr(v.databases);
  const key = JSON.stringify([v.dev_mode, v.control, dbs]);
  if (key === databasesKey) return;
  databasesKey = key;
  if (!dbs.length) { $("#databases").innerHTML = `<p class="muted">${v.control ? "" : "Under compose: the commands are below."}</p>`; return; }
  $("#databases").innerHTML = dbs.map((d) => {
    const until = d.until ? new Date(d.until).toLocaleTimeString() : "";
    const state = d.stopped ? `<b class="bad">refusing connections</b> until ${esc(until)}` : `<span class="ok">accepting connections</span>`;
    const button = !v.dev_mode ? "" : d.stopped
      ? ` <button data-db-start="${esc(d.name)}">start now</button>`
      : ` <button data-db-stop="${esc(d.name)}">stop for a while</button>`;
    return `<div class="database" data-database="${esc(d.name)}" data-stopped="${d.stopped}">${esc(d.name)} database: ${state}${button}</div>`;
  }).join("");
}

function renderRecords(v) {
  const render = (r) => `<tr data-id="${esc(r.id)}" data-customer="${esc(r.customer_id)}" data-status="${esc(r.status)}"${r.stale ? ' class="stale" data-stale="true"' : ""}>` +
    `<td><code>${short(r.id)}</code></td><td>${esc(r.customer_id)}</td><td>${money(r.amount, r.currency)}</td>` +
    `<td class="wrap">${arr(r.timeline).map((t) => `<span class="chip ${esc(t.status)}" title="${esc(t.at)}">${esc(t.status)}</span>`).join("→")}` +
    `${r.stale ? ' <span class="bad" title="its service does not answer: the state read last">(not answering)</span>' : ""}</td>` +
    `<td>${traceLink(v, r.trace_id)}</td></tr>`;
  rows("#orders tbody", arr(v.orders).map(render));
  rows("#payments tbody", arr(v.payments).map(render));
}

function render(v) {
  const t0 = performance.now();
  view = v;
  document.body.classList.toggle("readonly", !v.dev_mode);
  $("#mode").textContent = v.dev_mode ? (v.control ? "dev mode · dev stack" : "dev mode · compose") : "read only";
  $("#compose-section").hidden = !(v.dev_mode && !v.control);
  $("#kill-leader").hidden = !(v.dev_mode && v.control);
  renderRaft(v);
  renderRings(v);
  renderLocks(v);
  renderFenceRefusals(v);
  renderStorms(v);
  renderBank(v);
  renderRecords(v);
  renderDatabases(v);
  rows("#problems", (v.problems || []).map((p) => `<li>${esc(p)}</li>`));
  const now = Date.now();
  updates = updates.filter((t) => now - t < 10000).concat(now);
  $("#rate").textContent = `view #${v.seq} · ${(updates.length / 10).toFixed(1)} updates/s · read in ${v.read_ms} ms`;
  document.body.dataset.seq = v.seq;
  const ms = performance.now() - t0;
  const st = window.consoleStats;
  st.renders++; st.totalMs += ms; st.maxMs = Math.max(st.maxMs, ms);
}

// Views that arrive faster than the page paints are not all drawn: the
// latest one is, at the next frame. A busy page catches up with one render
// instead of a queue of stale ones.
let pendingView = null;
function renderPending() {
  if (pendingView === null) return; // drawn already
  const data = pendingView;
  pendingView = null;
  render(JSON.parse(data));
}

function connect() {
  const es = new EventSource("api/events");
  es.addEventListener("view", (e) => {
    window.consoleStats.views++;
    const scheduled = pendingView !== null;
    pendingView = e.data;
    // A frame, or a timer where no frames are painted (a background tab).
    if (!scheduled) { requestAnimationFrame(renderPending); setTimeout(renderPending, 250); }
  });
  es.onopen = () => { $("#conn").textContent = "live"; $("#conn").className = "badge on"; };
  // EventSource reconnects by itself; the badge says so meanwhile.
  es.onerror = () => { $("#conn").textContent = "reconnecting"; $("#conn").className = "badge off"; };
}

document.addEventListener("click", async (e) => {
  const b = e.target.closest("button");
  if (!b) return;
  if (b.id === "kill-leader") { e.preventDefault(); await act("api/actions/kill-leader"); }
  else if (b.id === "set-latency") { await act("api/actions/faults", {latency_ms: Number($("#latency-ms").value)}); }
  else if (b.dataset.fault) { await act("api/actions/faults", JSON.parse(b.dataset.fault)); }
  else if (b.dataset.start) { await act(`api/actions/processes/${encodeURIComponent(b.dataset.start)}/start`); }
  else if (b.dataset.stop) { await act(`api/actions/processes/${encodeURIComponent(b.dataset.stop)}/stop`); }
  else if (b.dataset.trace) { showTrace(b.dataset.trace); }
  else if (b.dataset.dbStop) { await act(`api/actions/databases/${encodeURIComponent(b.dataset.dbStop)}/stop`); }
  else if (b.dataset.dbStart) { await act(`api/actions/databases/${encodeURIComponent(b.dataset.dbStart)}/start`); }
  else if (b.dataset.pause) { await act(`api/actions/processes/${encodeURIComponent(b.dataset.pause)}/pause`); }
});

$("#storm").addEventListener("submit", async (e) => {
  e.preventDefault();
  await act("api/actions/storm", {requests: Number($("#storm-n").value), customer_id: $("#storm-customer").value});
});

$("#lookup").addEventListener("submit", async (e) => {
  e.preventDefault();
  const resp = await fetch("api/ring/lookup?customer=" + encodeURIComponent($("#lookup-customer").value));
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) { $("#placements").textContent = data.detail || resp.status; return; }
  const pay = data.placements.find((p) => p.partition !== undefined);
  lookedUp = pay ? pay.partition : -1;
  $("#placements").innerHTML = data.placements.map((p) =>
    `<div data-placement="${esc(p.service)}" data-owner="${esc(p.owner)}" data-key="${esc(p.key)}">${esc(p.service)}: ` +
    (p.partition !== undefined ? `partition ${p.partition} (key <code>${esc(p.key)}</code>)` : `key <code>${esc(p.key)}</code>`) +
    `, slot ${p.slot}, owner <b>${esc(p.owner)}</b>, then ${esc(p.successors.slice(1).join(", ") || "nobody")}` +
    (p.partition !== undefined ? (p.lease ? `; lease held by ${esc(p.lease.holder)}, token ${p.lease.token}` : "; its lease is free right now") : "") +
    `</div>`).join("");
  if (view) renderLeases(view);
});

connect();
