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
window.consoleStats = {renders: 0, totalMs: 0, maxMs: 0};

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

function rows(tbody, html) { $(tbody).innerHTML = html.join(""); }

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

function renderLocks(v) {
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
    : fs.map((f, i) => `<p class="fence" data-fence-refusal="${esc(f.instance)}">${i === 0 ? "<b>Last write the fence refused:</b>" : "Before that:"} ` +
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

function connect() {
  const es = new EventSource("api/events");
  es.addEventListener("view", (e) => render(JSON.parse(e.data)));
  es.onopen = () => { $("#conn").textContent = "live"; $("#conn").className = "badge on"; };
  // EventSource reconnects by itself; the badge says so meanwhile.
  es.onerror = () => { $("#conn").textContent = "reconnecting"; $("#conn").className = "badge off"; };
}

document.addEventListener("click", async (e) => {
  const b = e.target.closest("button");
  if (!b) return;
  if (b.id === "kill-leader") { e.preventDefault(); await act("api/actions/kill-leader"); }
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
  $("#placements").innerHTML = data.placements.map((p) =>
    `<div data-placement="${esc(p.service)}">${esc(p.service)}: slot ${p.slot}, owner <b>${esc(p.owner)}</b>, then ${esc(p.successors.slice(1).join(", ") || "nobody")}</div>`).join("");
});

connect();
