// damocles status page: plain JS, no build step. Every REFRESH_MS it asks /ui/api/version (one
// cheap query on the manager) and only when its ETag changed /ui/api/overview. It never sees a
// token: the browser holds an HttpOnly session cookie that a one-time login link set
// (`damocles manager login-url`), and sends it with every request to this origin.
"use strict";

const REFRESH_MS = 2000;
const STATES = ["Empty", "Allocated", "DealsAcquired", "PieceAdded", "TreeDBuilt", "TicketAssigned", "PC1Done",
  "PC2Done", "PCSubmitted", "PCLanded", "Persisted", "PersistanceSubmitted", "SeedAssigned", "C1Done", "C2Done",
  "ProofSubmitted", "Finished", "Aborted"];

let etag = null, overview = null, detail = null, pings = {}, clockSkew = 0, busy = false, loggedOut = false;
// the overview carries the first page of the sectors in flight and of the failing ones; "show more"
// asks for the next ones (/ui/api/sectors pages), fetched again after each new overview so they stay current
let extraWanted = 0, extraLive = [], attentionWanted = 0, extraAttention = [];
// the overview lists at most 100 workers, those needing attention first; "show more" pages the others
// by name (/ui/api/workers) and "find" lists those whose name has the text: both asked again at every
// refresh while shown, as version's pings cover only the workers the overview listed
let workersWanted = 0, extraWorkers = [], workerFind = "", foundWorkers = null;

const $ = (id) => document.getElementById(id);
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));

function dur(s) {
  if (s == null || isNaN(s)) return "";
  s = Math.max(0, s);
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} m ${Math.round(s % 60)} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} m`;
  return `${Math.floor(s / 86400)} d ${Math.round((s % 86400) / 3600)} h`;
}

function bytes(n) {
  const u = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}

function flash(text, isError) {
  const f = $("flash");
  f.textContent = text;
  f.className = isError ? "error" : "";
}

async function get(path) {
  const r = await fetch(path, { credentials: "same-origin", cache: "no-store" });
  if (r.status === 401 || r.status === 403) {
    const why = (await r.text()).trim();
    throw Object.assign(new Error(why), { auth: true });
  }
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}

async function rpc(method, ...params) {
  const r = await fetch("/rpc/v0", {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }),
  });
  const answer = await r.json();
  if (r.status === 401) showLogin(answer.error ? answer.error.message : "");
  if (answer.error) throw new Error(answer.error.message);
  return answer.result;
}

function showLogin(message) {
  loggedOut = true;
  $("login").hidden = false;
  $("main").hidden = true;
  $("logout").hidden = true;
  $("login-error").textContent = message || "";
}

// ------------------------------------------------------------------------------ rendering

function sectorLink(s) { return `<a class="sector" data-open="${esc(s)}">${esc(s)}</a>`; }

function renderSummary(ov) {
  const counts = ov.Sectors.LiveCounts || {};
  const order = Object.keys(counts).sort((a, b) => STATES.indexOf(a) - STATES.indexOf(b));
  const failing = ov.Sectors.Failing;
  const fin = ov.Sectors.FinalizedCounts || {};
  $("summary").innerHTML =
    `<span class="chip">in flight<b>${ov.Sectors.LiveTotal}</b></span>` +
    order.map((st) => `<span class="chip" data-state="${esc(st)}">${esc(st)}<b>${counts[st]}</b></span>`).join("") +
    (failing ? `<span class="chip failing">failing<b>${failing}</b></span>` : "") +
    Object.entries(fin).map(([st, n]) => `<span class="chip">${esc(st)} (finalized)<b>${n}</b></span>`).join("");
}

function renderPipeline(ov) {
  const byWorker = {};
  const live = ov.Sectors.Live.concat(extraLive);
  for (const s of live) {
    const w = s.Worker || "(not reported yet)";
    (byWorker[w] = byWorker[w] || []).push(s);
  }
  const names = Object.keys(byWorker).sort();
  if (!names.length) { $("pipeline").innerHTML = `<p class="muted">No sector in flight.</p>`; return; }
  $("pipeline").innerHTML = names.map((w) => {
    const rows = byWorker[w].sort((a, b) => String(a.Location).localeCompare(String(b.Location)) || a.Number - b.Number);
    return `<div class="worker"><h3>${esc(w)}</h3><table><thead><tr><th>thread (location)</th><th>sector</th><th>state</th>
      <th class="num">in state</th><th class="num">age</th><th>last report</th></tr></thead><tbody>` +
      rows.map((s) => `<tr data-sector="${esc(s.Sector)}" data-state="${esc(s.State)}">
        <td class="mono">${esc((s.Location || "").split("/").slice(-1)[0] || "-")}</td><td>${sectorLink(s.Sector)}</td>
        <td>${esc(s.State)}</td><td class="num">${dur(s.InState)}</td><td class="num">${dur(s.Age)}</td>
        <td>${s.Failure ? `<span class="${s.Failure.Level === "temp" ? "warn" : "bad"}">${esc(s.Failure.Level)}</span>` : (s.StoreWait || s.FundsWait) ? "" : `<span class="ok">ok</span>`}
          ${s.StoreWait ? `<span class="warn store-wait">waiting for a persist store: ${esc(s.StoreWait)}</span>` : ""}
          ${s.FundsWait ? `<span class="warn funds-wait">${esc(s.FundsWait)}</span>` : ""}</td></tr>`).join("") +
      `</tbody></table></div>`;
  }).join("") + (live.length < ov.Sectors.LiveTotal
    ? `<p class="muted">Showing ${live.length} of ${ov.Sectors.LiveTotal} sectors in flight (by number).
        <button type="button" id="more-live">show more</button></p>` : "");
}

async function sectorPages(filter, first, wanted) {
  // the pages after the overview's own (`first`), up to what the operator asked to see
  let got = [], next = first.length ? first[first.length - 1].Sector : null;
  while (got.length < wanted && next) {
    const page = await get(`/ui/api/sectors?${filter}&limit=${Math.min(500, wanted - got.length)}&after=${encodeURIComponent(next)}`);
    got = got.concat(page.Sectors);
    next = page.Next;
  }
  return got;
}

async function fetchExtraLive() {
  extraLive = await sectorPages("open=1", overview.Sectors.Live, extraWanted);
}

async function fetchExtraAttention() {
  extraAttention = await sectorPages("open=1&failing=1", overview.Sectors.Attention, attentionWanted);
}

function renderAttention(ov) {
  const rows = ov.Sectors.Attention.concat(extraAttention);
  if (!rows.length) { $("attention").innerHTML = `<p class="muted">Nothing failing.</p>`; return; }
  const shown = rows.length < ov.Sectors.Failing ? `<p class="muted">The first ${rows.length} of ${ov.Sectors.Failing} failing sectors (by number).
    <button type="button" id="more-attention">show more</button></p>` : "";
  const options = STATES.filter((s) => s !== "Empty" && s !== "Finished").map((s) => `<option>${s}</option>`).join("");
  $("attention").innerHTML = `<table><thead><tr><th>sector</th><th>state</th><th>worker</th><th>level</th><th>error</th>
    <th class="num">since</th><th>actions</th></tr></thead><tbody>` +
    rows.map((s) => `<tr class="failed" data-sector="${esc(s.Sector)}">
      <td>${sectorLink(s.Sector)}</td><td>${esc(s.State)}</td><td>${esc(s.Worker)}</td>
      <td class="${s.Failure.Level === "temp" ? "warn" : "bad"}">${s.Failure.Level === "temp" ? "retrying (temp)" : `paused (${esc(s.Failure.Level)})`}</td>
      <td><pre class="err">${esc(s.Failure.Desc)}</pre></td><td class="num">${dur(s.InState)}</td>
      <td><button type="button" class="resume" data-sector="${esc(s.Sector)}">Resume</button>
        <select class="resume-state" data-sector="${esc(s.Sector)}">${options}</select>
        <button type="button" class="resume-at" data-sector="${esc(s.Sector)}">Resume at state</button>
        <button type="button" class="abort danger" data-sector="${esc(s.Sector)}">Abort</button></td></tr>`).join("") +
    `</tbody></table>` + shown;
  for (const sel of document.querySelectorAll("select.resume-state")) {
    const s = rows.find((r) => r.Sector === sel.dataset.sector);
    if (s) sel.value = s.State;
  }
}

function renderWorkers(ov) {
  if (!ov) return;
  const ws = ov.Workers;
  if (!ws.Total) { $("workers").innerHTML = `<p class="muted">No worker has pinged yet.</p>`; return; }
  const p = ws.Pinged;
  const chips = `<div class="chips"><span class="chip">workers<b>${ws.Total}</b></span>
    <span class="chip">pinged in the last minute<b>${p.Fresh}</b></span>
    <span class="chip${p.Late ? " failing" : ""}">late (1-10 min)<b>${p.Late}</b></span>
    <span class="chip${p.Silent ? " failing" : ""}">silent (over 10 min)<b>${p.Silent}</b></span>
    <span class="chip${ws.Attention ? " failing" : ""}">need attention<b>${ws.Attention}</b></span></div>`;
  const rows = foundWorkers ? foundWorkers.Workers : ws.Workers.concat(extraWorkers);
  const note = foundWorkers
    ? `<p class="muted">${foundWorkers.Total} worker(s) whose name has “${esc(workerFind)}”${foundWorkers.Total > rows.length ? `, the first ${rows.length}` : ""}.
        <button type="button" id="find-worker-clear">show all</button></p>`
    : `<p class="muted">Showing ${rows.length} of ${ws.Total} workers: those needing attention first (a late or silent ping,
        paused threads or errors; the stalest first), then by name.${rows.length < ws.Total ? ` <button type="button" id="more-workers">show more</button>` : ""}</p>`;
  $("workers").innerHTML = chips + `<table><thead><tr><th>worker</th><th>RPC</th><th>version</th><th class="num">last ping</th>
    <th>threads</th></tr></thead><tbody>` +
    rows.map((w) => {
      const sm = w.Summary || {};
      const parts = ["Running", "Waiting", "Paused", "Empty", "Errors"].filter((k) => sm[k]).map((k) => `${k.toLowerCase()} ${sm[k]}`);
      return `<tr data-worker="${esc(w.Name)}"><td>${esc(w.Name)}</td><td class="mono">${esc(w.Dest)}</td><td>${esc(w.Version)}</td>
        <td class="num ping" data-worker="${esc(w.Name)}" data-last="${esc(w.LastPing)}">${dur(pingAge(w.Name, w.LastPing))} ago</td>
        <td>${sm.Threads ?? "?"} threads${parts.length ? ": " + esc(parts.join(", ")) : ""}</td></tr>`;
    }).join("") + `</tbody></table>` + note;
}

async function fetchExtraWorkers() {
  // a find's matches (by name), or the workers after those the overview listed, by name, up to what was asked
  if (workerFind) {
    foundWorkers = await get(`/ui/api/workers?limit=500&name=${encodeURIComponent(workerFind)}`);
    return;
  }
  foundWorkers = null;
  const listed = new Set(overview.Workers.Workers.map((w) => w.Name));
  let got = [], next = "";
  while (got.length < workersWanted && next != null) {
    const page = await get(`/ui/api/workers?limit=500&after=${encodeURIComponent(next)}`);
    got = got.concat(page.Workers.filter((w) => !listed.has(w.Name)));
    next = page.Next;
  }
  extraWorkers = got.slice(0, workersWanted);
}

function pingAge(name, fallback) {
  const last = pings[name] ?? fallback;
  return Date.now() / 1000 + clockSkew - last;
}

// the chain views are computed in the background (web/chain_views.py): the epoch and age they describe
function asOf(v) {
  return v.AsOf == null ? "" : ` <span class="muted">(as of epoch ${esc(v.AsOf)}${v.Age != null ? `, ${Math.round(v.Age)} s ago` : ""})</span>`;
}

function computing(miner, v) {
  if (v.Computing) return `<h3>f0${esc(miner)}</h3><p class="muted">computing…</p>`;
  if (v.Error) return `<h3>f0${esc(miner)}${asOf(v)}</h3><p class="error">${esc(v.Error)}</p>`;
  return null;
}

// a partition's faulty (recovering) sectors: the count, and the first numbers the manager sent
function numbers(count, first) {
  if (!count) return "-";
  first = first || [];
  return `${count}: ${esc(first.join(", "))}${count > first.length ? " …" : ""}`;
}

function renderProving(ov) {
  const miners = Object.entries(ov.Proving || {});
  if (!miners.length) { $("proving").innerHTML = `<p class="muted">No miner configured.</p>`; return; }
  $("proving").innerHTML = miners.map(([miner, p]) => {
    const pending = computing(miner, p);
    if (pending) return pending;
    const withParts = new Map(p.Deadlines.map((d) => [d.Index, d]));
    const grid = Array.from({ length: 48 }, (_, i) => {
      const d = withParts.get(i);
      const faulty = d && d.Partitions.some((x) => x.Faulty);
      return `<div class="dl${d ? " has" : ""}${faulty ? " faulty" : ""}${i === p.Deadline ? " current" : ""}" title="deadline ${i}">${i}</div>`;
    }).join("");
    const t = p.Totals;
    return `<h3>f0${esc(miner)}: deadline ${p.Deadline} (epochs ${p.Open}–${p.Close}), period start ${p.PeriodStart}${asOf(p)}</h3>
      <div class="chips"><span class="chip">partitions proven<b>${t.PartitionsProven}</b></span>
        <span class="chip${t.PartitionsMissed ? " failing" : ""}">missed<b>${t.PartitionsMissed}</b></span>
        <span class="chip">faulty (detected)<b>${t.SectorsFaultyDetected}</b></span>
        <span class="chip">declared faulty<b>${t.SectorsDeclaredFaulty}</b></span>
        <span class="chip">recovered<b>${t.SectorsDeclaredRecovered}</b></span>
        <span class="chip">blocks won<b>${t.BlocksWon}</b></span><span class="chip">blocks missed<b>${t.BlocksMissed}</b></span></div>
      <div class="deadlines">${grid}</div>` +
      (p.Deadlines.length ? `<table class="partitions"><thead><tr><th>deadline</th><th>partition</th><th class="num">sectors</th>
        <th>faulty</th><th>recovering</th><th>proven this period</th><th>round</th></tr></thead><tbody>` +
        p.Deadlines.flatMap((d) => d.Partitions.map((x) => `<tr><td>${d.Index}${d.Current ? " (current)" : ""}</td><td>${x.Index}</td>
          <td class="num">${x.Sectors}</td><td class="${x.Faulty ? "bad" : ""}">${numbers(x.Faulty, x.FaultyFirst)}</td>
          <td>${numbers(x.Recovering, x.RecoveringFirst)}</td><td>${x.Proven ? `<span class="ok">yes</span>` : "no"}</td>
          <td>${esc(d.Round.state || "")}${d.Round.error ? ` <span class="error">${esc(d.Round.error)}</span>` : ""}</td></tr>`)).join("") +
        `</tbody></table>` : `<p class="muted">No sector is proving yet.</p>`) +
      (p.Records.length ? `<h3>Last closed deadlines</h3><table><thead><tr><th>deadline</th><th class="num">closed at</th>
        <th class="num">partitions proven</th><th class="num">sectors</th><th class="num">new faults</th><th class="num">penalty</th></tr></thead><tbody>` +
        p.Records.slice().reverse().map((r) => `<tr><td>${r.index}</td><td class="num">${r.close}</td>
          <td class="num ${r.partitions_proven < r.partitions ? "bad" : ""}">${r.partitions_proven}/${r.partitions}</td>
          <td class="num">${r.sectors_proven}/${r.sectors}</td><td class="num">${r.sectors_faulty_new}</td>
          <td class="num">${r.penalty}</td></tr>`).join("") + `</tbody></table>` : "");
  }).join("");
}

function renderExpiring(ov) {
  const miners = Object.entries(ov.Expiring || {});
  $("expiring").innerHTML = miners.map(([miner, e]) => {
    const pending = computing(miner, e);
    if (pending) return pending;
    if (!e.Total) return `<p class="muted">f0${esc(miner)}: no sector expires in the next ${e.Days} days${asOf(e)}.</p>`;
    return `<h3>f0${esc(miner)}: ${e.Total} sector(s) expire in the next ${e.Days} days${asOf(e)}</h3>
      <table class="expiring"><thead><tr><th>deadline</th><th class="num">sectors</th><th>first</th></tr></thead><tbody>` +
      e.Deadlines.map((d) => `<tr><td>${d.Deadline}</td><td class="num">${d.Count}</td>
        <td>${esc(d.First.join(", "))}${d.Count > d.First.length ? " …" : ""}</td></tr>`).join("") + `</tbody></table>`;
  }).join("");
}

function renderStores(ov) {
  $("stores").innerHTML = `<table><thead><tr><th>store</th><th>path</th><th class="num">free</th><th class="num">total</th>
    <th class="num">reserved</th><th>used</th></tr></thead><tbody>` +
    ov.Stores.map((s) => {
      const used = s.Total ? (s.Total - s.Free) / s.Total : 0;
      return `<tr><td>${esc(s.Name)}${s.ReadOnly ? " (read-only)" : ""}</td><td class="mono">${esc(s.Path)}</td>
        <td class="num">${bytes(s.Free)}</td><td class="num">${bytes(s.Total)}</td><td class="num">${bytes(s.Reserved)}</td>
        <td><div class="bar" title="${(used * 100).toFixed(1)}%"><span style="width:${(used * 100).toFixed(1)}%"></span></div></td></tr>`;
    }).join("") + `</tbody></table>`;
}

function renderTerminations(ov) {
  const rows = ov.Terminations || [];
  const what = (t) => ({
    queued: `queued at epoch ${esc(t.AddedHeight)}${t.LastFailure ? ` <span class="warn">(again: ${esc(t.LastFailure)})</span>` : ""}`,
    sent: `sent <span class="mono">${esc(t.Message)}</span>`,
    landed: `landed at epoch ${esc(t.TerminatedAt)} <span class="mono">${esc(t.Message)}</span>${t.Removed ? ", files removed" : ""}`,
    failed: `<span class="error">failed: ${esc(t.Error)}</span>`,
  }[t.State]);
  $("terminations").innerHTML = rows.length ? `<table><thead><tr><th>sector</th><th>state</th><th>detail</th></tr></thead><tbody>` +
    rows.map((t) => `<tr data-termination="${esc(t.Sector)}"><td>${sectorLink(t.Sector)}</td><td>${esc(t.State)}</td>
      <td>${what(t)}</td></tr>`).join("") + `</tbody></table>` : `<p class="muted">None.</p>`;
}

function renderRecent(ov) {
  const rows = ov.Sectors.Recent;
  $("recent").innerHTML = rows.length ? `<table><thead><tr><th>sector</th><th>state</th><th>worker</th><th class="num">took</th>
    <th>abort reason</th></tr></thead><tbody>` +
    rows.map((s) => `<tr data-sector="${esc(s.Sector)}"><td>${sectorLink(s.Sector)}</td><td>${esc(s.State)}</td>
      <td>${esc(s.Worker)}</td><td class="num">${dur(s.Age - s.InState)}</td><td class="error">${esc(s.AbortReason || "")}</td></tr>`).join("") +
    `</tbody></table>` : `<p class="muted">None yet.</p>`;
}

function renderDetail() {
  if (!detail) { $("detail-section").hidden = true; return; }
  $("detail-section").hidden = false;
  $("detail-name").textContent = detail.Sector;
  const r = detail.Record;
  $("detail").innerHTML = `<p>state <b>${esc(r.state)}</b>, worker ${esc(r.worker || "-")}, location
    <span class="mono">${esc(r.location || "-")}</span>${r.abort_reason ? `, <span class="error">aborted: ${esc(r.abort_reason)}</span>` : ""}</p>
    <table id="history"><thead><tr><th>at</th><th>from</th><th>event</th><th>to</th><th class="num">duration</th><th>worker</th>
    <th>failure</th></tr></thead><tbody>` +
    detail.History.map((h) => `<tr><td>${esc(new Date(h.at * 1000).toLocaleTimeString())}</td><td>${esc(h.prev)}</td>
      <td>${esc(h.event)}</td><td>${esc(h.next)}</td><td class="num">${dur(h.Duration)}</td><td>${esc(h.worker)}</td>
      <td>${h.level ? `<span class="${h.level === "temp" ? "warn" : "bad"}">${esc(h.level)}</span> ${esc((h.error || "").split("\n")[0])}` : ""}</td></tr>`).join("") +
    `</tbody></table>`;
}

function render() {
  if (!overview) return;
  $("epoch").textContent = overview.Epoch != null ? `epoch ${overview.Epoch}` : "";
  renderSummary(overview);
  renderPipeline(overview);
  renderAttention(overview);
  renderWorkers(overview);
  renderProving(overview);
  renderExpiring(overview);
  renderStores(overview);
  renderTerminations(overview);
  renderRecent(overview);
  renderDetail();
}

// ------------------------------------------------------------------------------- refresh

async function openSector(name) {
  try {
    detail = await get(`/ui/api/sector/${encodeURIComponent(name)}`);
    renderDetail();
    $("detail-section").scrollIntoView({ block: "nearest" });
  } catch (e) { flash(e.message, true); }
}

async function refresh(force) {
  if (busy || loggedOut) return;
  busy = true;
  try {
    const v = await get("/ui/api/version");
    pings = v.Pings || {};
    clockSkew = v.Now - Date.now() / 1000;
    $("epoch").textContent = v.Epoch != null ? `epoch ${v.Epoch}` : "";
    if (force || v.ETag !== etag) {
      overview = await get("/ui/api/overview");
      etag = overview.ETag;
      if (extraWanted) await fetchExtraLive();
      if (attentionWanted) await fetchExtraAttention();
      if (workersWanted || workerFind) await fetchExtraWorkers();
      if (detail) detail = await get(`/ui/api/sector/${encodeURIComponent(detail.Sector)}`);
      render();
    } else {
      if (workersWanted || workerFind) {
        await fetchExtraWorkers();
        renderWorkers(overview);
      }
      for (const td of document.querySelectorAll("td.ping")) {
        td.textContent = `${dur(pingAge(td.dataset.worker, Number(td.dataset.last)))} ago`;
      }
    }
    $("login").hidden = true;
    $("main").hidden = false;
    $("logout").hidden = false;
    $("refreshed").textContent = `updated ${new Date().toLocaleTimeString()}`;
    $("refreshed").dataset.etag = etag;
  } catch (e) {
    if (e.auth) showLogin(e.message); else flash(e.message, true);
  } finally {
    busy = false;
  }
}

async function act(label, method, ...params) {
  flash(`${label}…`);
  try {
    const result = await rpc(method, ...params);
    flash(`${label}: ${JSON.stringify(result)}`);
  } catch (e) {
    flash(`${label}: ${e.message}`, true);
  }
  await refresh(true);
}

function findSector() {
  // a sector by its id (1000-5, s-t01000-5): the page never holds every sector, the manager finds it
  const name = $("find").value.trim();
  if (name) openSector(name);
}

function findWorker() {
  // workers whose name has the text (the page lists at most 100 by itself); empty: the usual list
  workerFind = $("find-worker").value.trim();
  foundWorkers = null;
  fetchExtraWorkers().then(() => renderWorkers(overview), (e) => flash(e.message, true));
}

function sid(name) {
  const [miner, number] = name.replace(/^s-t0/, "").split("-").map(Number);
  return { Miner: miner, Number: number };
}

document.addEventListener("click", (ev) => {
  const t = ev.target;
  if (t.dataset.open) { openSector(t.dataset.open); return; }
  if (t.id === "more-live") {
    extraWanted += 200;
    fetchExtraLive().then(() => renderPipeline(overview), (e) => flash(e.message, true));
    return;
  }
  if (t.id === "more-attention") {
    attentionWanted += 200;
    fetchExtraAttention().then(() => renderAttention(overview), (e) => flash(e.message, true));
    return;
  }
  if (t.id === "more-workers") {
    workersWanted += 100;
    fetchExtraWorkers().then(() => renderWorkers(overview), (e) => flash(e.message, true));
    return;
  }
  if (t.id === "find-worker-go") { findWorker(); return; }
  if (t.id === "find-worker-clear") {
    $("find-worker").value = "";
    findWorker();
    return;
  }
  if (t.id === "find-go") { findSector(); return; }
  const s = t.dataset.sector;
  if (!s || t.tagName !== "BUTTON") return;
  if (t.classList.contains("resume")) act(`resume ${s}`, "Venus.SectorResume", sid(s), null);
  else if (t.classList.contains("resume-at")) {
    const state = document.querySelector(`select.resume-state[data-sector="${s}"]`).value;
    act(`resume ${s} at ${state}`, "Venus.SectorResume", sid(s), state);
  } else if (t.classList.contains("abort")) {
    if (confirm(`Abort ${s}? Its sealing work is given up.`)) act(`abort ${s}`, "Venus.SectorAbort", sid(s), "aborted from the status page");
  }
});

$("detail-close").addEventListener("click", () => { detail = null; renderDetail(); });
$("find").addEventListener("keydown", (ev) => { if (ev.key === "Enter") findSector(); });
$("find-worker").addEventListener("keydown", (ev) => { if (ev.key === "Enter") findWorker(); });
$("logout").addEventListener("click", async () => {
  try {
    // a JSON POST from this origin: the manager's cross-site checks apply as to every action
    const r = await fetch("/ui/logout", { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" }, body: "{}" });
    if (!r.ok) throw new Error(`log out: HTTP ${r.status}`);
  } catch (e) { flash(e.message, true); return; }
  etag = null; overview = null; detail = null;
  showLogin("Logged out.");
});

(function start() {
  refresh(true);
  setInterval(() => refresh(false), REFRESH_MS);
})();
