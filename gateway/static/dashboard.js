// labelscan admin dashboard: plain DOM, no framework, no build step.
//
// Every value from the API goes into the page as text (textContent, Node.append of
// strings), never as markup: product names, error messages and evidence come from users
// or from label text. The page's CSP enforces Trusted Types, so a string assigned to an
// HTML sink would throw instead of injecting.
"use strict";

const KEY_STORAGE = "labelscan.apiKey";
const STATS_EVERY_MS = 2000;
const EVENTS_REOPEN_MS = 3000;
const FEED_MAX_ROWS = 200;
const SCAN_ID = /^[0-9a-f]{32}$/;
const TERMINAL = new Set(["completed", "failed", "cancelled"]);
const EVENT_TYPES = ["scheduled", "queued", "progress", "retrying", "completed", "failed",
                     "cancelled"];

// --- DOM helpers (with $ and el of dom.js) -------------------------------------------

function fmt(value) {
  if (value === null || value === undefined) return "none";
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (Array.isArray(value)) return value.length ? value.map(fmt).join(", ") : "none";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

const label = (name) => String(name).replaceAll("_", " ");

function when(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString();
}

function progressBar(percentage) {
  const pct = Math.max(0, Math.min(100, Number(percentage) || 0));
  return el("progress", {max: 100, value: pct, "aria-label": `${pct} %`});
}

function show(node, message) {
  node.textContent = message || "";
  node.hidden = !message;
}

// --- API calls -----------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status; // 0: no answer at all (network error); -1: not sent (no key)
    this.body = body;
  }
}

function describe(response, body) {
  if (response.status === 401) return "Bad key: the gateway refused this API key (401).";
  const detail = body && typeof body.detail === "string" ? body.detail : response.statusText;
  const error = body && typeof body.error === "string" ? ` ${body.error}` : "";
  if (response.status === 429) {
    const wait = response.headers.get("retry-after");
    return `Rate limited (429): ${detail}${wait ? `; retry in ${wait} s` : ""}.`;
  }
  return `${response.status}${error}: ${detail}`;
}

async function api(method, path, body) {
  const key = sessionStorage.getItem(KEY_STORAGE);
  if (!key) throw new ApiError(-1, "No API key: enter one above.", null); // nothing was sent
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: {
        "Authorization": `Bearer ${key}`,
        "Accept": "application/json",
        ...(body === undefined ? {} : {"Content-Type": "application/json"}),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch (err) {
    throw new ApiError(0, `Network error: the gateway did not answer (${err.message}).`, null);
  }
  let answer = null;
  try {
    answer = await response.json();
  } catch {
    answer = null; // a proxy's HTML error page, say: the status still tells what happened
  }
  if (!response.ok) throw new ApiError(response.status, describe(response, answer), answer);
  return answer;
}

// --- session: the key, and everything that runs while one is in use ----------------------

// Bumped whenever the key changes, so answers to requests sent with the old key are dropped.
let epoch = 0;
let statsTimer = null;

function showAlert(message) { show($("alert"), message); }

/** Route an error: a refused key stops everything; per-section 4xx stay in their section. */
function report(err, line) {
  if (err.status === 401) {
    badKey(err.message);
  } else if (line && err.status >= 400 && err.status < 500 && err.status !== 429) {
    show(line, err.message);
  } else {
    showAlert(err.message);
  }
}

function badKey(message) {
  stop();
  sessionStorage.removeItem(KEY_STORAGE); // a reload must not keep sending a refused key
  $("key-status").textContent = "bad key";
  $("key-status").dataset.state = "bad";
  showAlert(message);
}

function stop() {
  epoch += 1;
  clearTimeout(statsTimer);
  clearTimeout(detailTimer);
  clearTimeout(deadTimer);
  clearTimeout(scanTimer);
  closeEvents();
}

async function start() {
  stop();
  const mine = epoch;
  showAlert("");
  $("key-status").textContent = "checking key…";
  $("key-status").dataset.state = "checking";
  await refreshStats(mine);
  if (mine !== epoch) return; // the key was refused, or replaced meanwhile
  // Even after a network error: the feed keeps trying to connect, and stats keep polling.
  openEvents(mine);
  loadDead(null);
  loadOperator(mine);
  reloadScans();
}

// --- queue stats ---------------------------------------------------------------------

async function refreshStats(mine) {
  clearTimeout(statsTimer);
  try {
    const stats = await api("GET", "/api/queue/stats");
    if (mine !== epoch) return;
    renderStats(stats);
    $("stats-updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    $("key-status").textContent = "key accepted";
    $("key-status").dataset.state = "ok";
    showAlert(""); // the gateway answers again: an earlier network error is over
  } catch (err) {
    if (mine !== epoch) return;
    report(err, null);
    if (err.status === 401) return;
  }
  statsTimer = setTimeout(() => refreshStats(mine), STATS_EVERY_MS);
}

/** Whatever fields the stats have: numbers as tiles, nested objects as small tables. */
function renderStats(stats) {
  const entries = Object.entries(stats || {});
  const isGroup = ([, v]) => v !== null && typeof v === "object" && !Array.isArray(v);
  const tiles = entries.filter((e) => !isGroup(e)).map(([name, value]) =>
    el("div", {class: "tile", "data-stat": name},
       el("span", {class: "value", text: fmt(value)}),
       el("span", {class: "name", text: label(name)})));
  const groups = entries.filter(isGroup).map(([name, value]) => {
    const pairs = el("dl", {class: "pairs"});
    const fields = Object.entries(value);
    if (!fields.length) pairs.append(el("dd", {class: "muted", text: "none"}));
    for (const [key, inner] of fields) {
      pairs.append(el("dt", {text: label(key)}),
                   el("dd", {"data-field": key, text: fmt(inner)}));
    }
    return el("div", {class: "group", "data-stat": name}, el("h3", {text: label(name)}), pairs);
  });
  $("stats").replaceChildren(el("div", {class: "tiles"}, ...tiles), ...groups);
}

// --- live events: the tenant's stream from the notifier ---------------------------------

let source = null;
let reopenTimer = null;
let lastEventId = "";
const rows = new Map(); // scan id -> the feed row's cells

function feedStatus(status, text) {
  const badge = $("feed-status");
  badge.dataset.status = status;
  badge.textContent = text || status;
}

function closeEvents() {
  clearTimeout(reopenTimer);
  if (source) source.close();
  source = null;
  feedStatus("off");
}

async function openEvents(mine) {
  closeEvents();
  feedStatus("connecting");
  let link;
  try {
    // A fresh link each time: its token expires, and a browser reconnecting by itself
    // would keep sending the old one.
    link = await api("GET", "/api/events-url");
  } catch (err) {
    if (mine !== epoch) return;
    report(err, null);
    if (err.status !== 401) reopenLater(mine);
    return;
  }
  if (mine !== epoch) return;
  const url = new URL(link.events_url, location.href);
  if (lastEventId) url.searchParams.set("last_event_id", lastEventId); // resume, no gap
  const es = new EventSource(url.href);
  source = es;
  es.onopen = () => { if (source === es) feedStatus("live"); };
  es.onerror = () => {
    if (source !== es) return;
    if (es.readyState === EventSource.CLOSED) {
      // Refused outright (an expired token, the notifier answering an error): the browser
      // gives up, so ask the gateway for a new link.
      feedStatus("disconnected", "disconnected, retrying");
      es.close();
      reopenLater(mine);
    } else {
      feedStatus("reconnecting"); // the browser retries by itself, with Last-Event-ID
    }
  };
  const onEvent = (e) => {
    if (source !== es) return;
    if (e.lastEventId) lastEventId = e.lastEventId;
    const data = parse(e.data);
    if (e.type === "reset") {
      // The resume point was trimmed from the history: each scan's latest event instead.
      for (const event of (data && Array.isArray(data.scans) ? data.scans : [])) apply(event);
    } else if (e.type !== "reconnect") {
      apply(data);
    }
  };
  for (const type of [...EVENT_TYPES, "reset", "reconnect"]) es.addEventListener(type, onEvent);
}

function reopenLater(mine) {
  clearTimeout(reopenTimer);
  reopenTimer = setTimeout(() => { if (mine === epoch) openEvents(mine); }, EVENTS_REOPEN_MS);
}

function parse(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

function feedRow(scanId) {
  const cells = {
    type: el("td", {class: "type"}),
    stage: el("td", {class: "stage"}),
    bar: progressBar(0),
    pct: el("span", {class: "pct"}),
    message: el("td", {class: "message"}),
    attempt: el("td", {class: "attempt"}),
    at: el("td", {class: "at"}),
  };
  const open = el("button", {type: "button", class: "link", title: "look up", text: scanId});
  open.addEventListener("click", () => lookup(scanId));
  cells.row = el("tr", {"data-scan-id": scanId},
                 el("td", {class: "scan"}, open), cells.type, cells.stage,
                 el("td", {class: "progress"}, cells.bar, cells.pct),
                 cells.message, cells.attempt, cells.at);
  return cells;
}

/** Show one scan event: its scan's row is created once, then updated in place. */
function apply(event) {
  if (!event || typeof event.scan_id !== "string") return;
  let cells = rows.get(event.scan_id);
  if (!cells) {
    cells = feedRow(event.scan_id);
    rows.set(event.scan_id, cells);
    $("feed").prepend(cells.row);
    while (rows.size > FEED_MAX_ROWS) {
      const [oldest, old] = rows.entries().next().value;
      old.row.remove();
      rows.delete(oldest);
    }
  }
  const progress = event.progress || {};
  const pct = Math.max(0, Math.min(100, Number(progress.percentage) || 0));
  let message = progress.message || "";
  if (event.error) {
    // The failure's progress message is usually the error's own message: say it once.
    const why = event.error.message === message ? "" : `: ${event.error.message}`;
    message += ` — ${event.error.kind}${why}`;
  }
  if (event.verdict) message += ` (verdict: ${event.verdict})`;
  cells.row.dataset.type = event.type;
  cells.type.textContent = event.type;
  cells.stage.textContent = progress.stage || "";
  cells.bar.value = pct;
  cells.pct.textContent = `${pct} %`;
  cells.message.textContent = message;
  cells.attempt.textContent = event.attempt ? String(event.attempt) : "";
  cells.at.textContent = event.at_ms ? new Date(event.at_ms).toLocaleTimeString() : "";
  // The other panels follow the feed: the scan on display, and new dead letters.
  if (event.scan_id === shownScan) refreshDetailSoon();
  if (event.type === "failed" && deadWanted === null) refreshDeadSoon();
}

// --- one scan: detail, findings, cancel, retry ----------------------------------------------

let shownScan = null;
let detailTimer = null;
let lookupSeq = 0; // only the latest lookup may draw: a slow earlier answer must not win
const outcomes = new Map(); // scan id -> what the last cancel or retry said, kept across refreshes

function refreshDetailSoon() {
  clearTimeout(detailTimer);
  detailTimer = setTimeout(() => { if (shownScan) lookup(shownScan); }, 150);
}

async function lookup(rawId) {
  const scanId = String(rawId).trim().toLowerCase();
  const line = $("lookup-error");
  show(line, "");
  $("lookup-input").value = scanId;
  if (!SCAN_ID.test(scanId)) {
    show(line, "A scan id is 32 hexadecimal digits.");
    return;
  }
  const mine = epoch;
  const seq = ++lookupSeq;
  try {
    const detail = await api("GET", `/api/scans/${scanId}`);
    if (mine !== epoch || seq !== lookupSeq) return;
    shownScan = scanId;
    renderDetail(detail);
  } catch (err) {
    if (mine !== epoch || seq !== lookupSeq) return;
    if (err.status === 404) {
      shownScan = null;
      $("detail").replaceChildren();
    }
    report(err, line);
  }
}

function renderDetail(d) {
  const progress = d.progress || {};
  const status = el("p", {class: "action-status", role: "status",
                          text: outcomes.get(d.scan_id) || ""});
  const actions = el("div", {class: "actions"});
  const button = (text, className, onClick) => {
    const b = el("button", {type: "button", class: className, text});
    b.addEventListener("click", () => onClick(b));
    actions.append(b);
  };
  button("Refresh", "refresh", () => lookup(d.scan_id));
  if (!TERMINAL.has(d.state)) {
    button("Cancel", "cancel", (b) => act(b, status, "DELETE", `/api/scans/${d.scan_id}`,
      (r) => `Cancelled (was ${r.previous_state}).`, d.scan_id));
  }
  if (d.state === "failed") {
    button("Retry", "retry", (b) => act(b, status, "POST", `/api/scans/${d.scan_id}/retry`,
      (r) => `Requeued: ${r.status}.`, d.scan_id));
  }
  const facts = el("dl", {class: "pairs"});
  for (const [name, value] of [
    ["scan id", d.scan_id], ["tenant", d.tenant], ["category", d.category],
    ["marketplaces", d.marketplaces], ["attempts", d.attempts],
    ["created", when(d.created_at)], ["updated", when(d.updated_at)],
    ["next attempt", d.next_attempt_at ? when(d.next_attempt_at) : null],
  ]) {
    facts.append(el("dt", {text: name}), el("dd", {text: fmt(value)}));
  }
  const card = el("article", {class: "card", "data-scan-id": d.scan_id, "data-state": d.state},
    el("h3", {},
       el("span", {class: "product", text: d.product_name}), " ",
       el("span", {class: "badge state", "data-state": d.state, text: d.state})),
    el("p", {class: "progressline"}, progressBar(progress.percentage),
       el("span", {text: ` ${progress.percentage ?? 0} % · ${progress.stage || ""} · `
                         + `${progress.message || ""}`})),
    facts, actions, status);
  if (d.error) {
    card.append(el("div", {class: "error-box"},
      el("strong", {class: "error-kind", text: d.error.kind}), ": ",
      el("span", {class: "error-message", text: d.error.message}),
      el("span", {class: "muted", text: d.error.retryable ? " (retryable)" : " (permanent)"})));
  }
  if (d.result) card.append(renderResult(d.result));
  $("detail").replaceChildren(card);
}

function renderResult(result) {
  const analysis = result.analysis || {};
  const usage = result.usage || {};
  const box = el("div", {class: "result"},
    el("h4", {}, "Result: ", el("span", {class: "verdict", "data-verdict": analysis.verdict,
                                          text: analysis.verdict})),
    el("p", {class: "summary", text: analysis.summary || ""}),
    el("p", {class: "muted", text: `${result.backend} · ${result.model} · `
      + `${result.duration_ms} ms · ${usage.input_tokens ?? 0} in / `
      + `${usage.output_tokens ?? 0} out tokens`}));
  for (const market of analysis.marketplaces || []) {
    const body = el("tbody");
    for (const f of market.findings || []) {
      body.append(el("tr", {"data-status": f.status, "data-severity": f.severity},
        el("td", {class: "status", text: f.status}), el("td", {text: f.severity}),
        el("td", {class: "rule", text: f.rule}), el("td", {text: f.requirement}),
        el("td", {text: f.evidence}), el("td", {text: f.fix}),
        el("td", {text: f.regulation})));
    }
    box.append(
      el("h5", {}, `${market.marketplace} — `,
         el("span", {class: "verdict", "data-verdict": market.verdict, text: market.verdict})),
      el("table", {class: "findings", "data-marketplace": market.marketplace},
         el("thead", {}, el("tr", {}, ...["status", "severity", "rule", "requirement",
                                          "evidence", "fix", "regulation"]
                                          .map((h) => el("th", {text: h})))),
         body));
  }
  return box;
}

/** A write (cancel, retry) from a button: its outcome next to it, then fresh data. */
async function act(button, status, method, path, success, scanId) {
  const mine = epoch;
  button.disabled = true;
  status.textContent = "…";
  try {
    const answer = await api(method, path);
    if (mine !== epoch) return false;
    status.textContent = success(answer);
    outcomes.set(scanId, status.textContent);
    if (scanId === shownScan) refreshDetailSoon();
    return true;
  } catch (err) {
    if (mine !== epoch) return false;
    button.disabled = false;
    status.textContent = err.message;
    outcomes.set(scanId, err.message);
    if (err.status === 401 || err.status === 0 || err.status >= 500) report(err, null);
    return false;
  }
}

// --- dead letters ----------------------------------------------------------------------------

let deadCursor = null; // the `before` of the page on display; null: the newest page
let deadWanted = null; // the page asked for last (a refresh reloads that one, not the shown one)
let deadSeq = 0; // only the latest request may draw, whatever order the answers come in
let deadNext = null;
let deadTimer = null;
const retried = new Set(); // dead-letter ids replayed from this page, so a reload says so

function refreshDeadSoon() {
  clearTimeout(deadTimer);
  deadTimer = setTimeout(() => loadDead(deadWanted), 300);
}

function deadCount() {
  const n = Number.parseInt($("dead-count").value, 10);
  return Number.isFinite(n) ? Math.max(1, Math.min(500, n)) : 20;
}

async function loadDead(before) {
  const mine = epoch;
  const seq = ++deadSeq;
  deadWanted = before;
  const query = new URLSearchParams({count: String(deadCount())});
  if (before) query.set("before", before);
  show($("dead-error"), "");
  try {
    const page = await api("GET", `/api/dead?${query}`);
    if (mine !== epoch || seq !== deadSeq) return;
    deadCursor = before;
    deadNext = page.next || null;
    renderDead(page.items || []);
  } catch (err) {
    if (mine !== epoch || seq !== deadSeq) return;
    report(err, $("dead-error"));
  }
}

function renderDead(items) {
  $("dead-older").disabled = !deadNext;
  $("dead-page").textContent = deadCursor ? `older than ${deadCursor}` : "newest first";
  const list = $("dead-list");
  if (!items.length) {
    list.replaceChildren(el("tr", {class: "empty"},
      el("td", {colspan: 6, class: "muted",
                text: deadCursor ? "No older dead letters." : "No dead letters."})));
    return;
  }
  list.replaceChildren(...items.map(deadRow));
}

function deadRow(letter) {
  const status = el("span", {class: "retry-status"});
  const cell = el("td", {class: "actions"});
  if (SCAN_ID.test(letter.scan_id)) {
    const retry = el("button", {type: "button", class: "retry", text: "Retry"});
    if (retried.has(letter.id)) {
      retry.disabled = true;
      status.textContent = "retried";
    }
    retry.addEventListener("click", async () => {
      const ok = await act(retry, status, "POST", `/api/scans/${letter.scan_id}/retry`,
                           (r) => `requeued (${r.status})`, letter.scan_id);
      if (ok) retried.add(letter.id);
    });
    cell.append(retry, " ", status);
  }
  let scan = el("span", {class: "muted", text: letter.scan_id || "(none)"});
  if (SCAN_ID.test(letter.scan_id)) {
    scan = el("button", {type: "button", class: "link", text: letter.scan_id});
    scan.addEventListener("click", () => lookup(letter.scan_id));
  }
  const error = letter.error || {};
  const history = (letter.history || []).map((h) => `${h.kind}: ${h.message}`).join("\n");
  return el("tr", {"data-id": letter.id, "data-scan-id": letter.scan_id},
    el("td", {text: when(letter.failed_at)}),
    el("td", {class: "scan"}, scan),
    el("td", {class: "product", text: letter.product_name ?? "—"}),
    el("td", {class: "error", title: history || letter.raw_entry || null,
              text: `${error.kind}: ${error.message}`}),
    el("td", {text: fmt(letter.attempts)}),
    cell);
}

// --- operator controls (admin keys; the routes answer 404 to any other key) -------------------

const LIMITS = ["anthropic_rpm", "anthropic_input_tpm", "anthropic_output_tpm",
                "tenant_max_active", "tenant_rps", "tenant_scans_per_day"];
let shownLimits = {};

async function loadOperator(mine) {
  try {
    const controls = await api("GET", "/api/admin/controls");
    if (mine !== epoch) return;
    $("operator").hidden = false;
    $("scans-tenant-box").hidden = false; // an admin lists every tenant's scans
    renderControls(controls);
    const stats = await api("GET", "/api/queue/stats");
    if (mine !== epoch) return;
    renderConsumers(stats.consumer_names || []);
    const audit = await api("GET", "/api/admin/audit?count=20");
    if (mine !== epoch) return;
    renderAudit(audit.entries || []);
  } catch (err) {
    if (mine !== epoch) return;
    $("operator").hidden = true; // not an admin's key
    if (err.status !== 404) report(err, null);
  }
}

function renderControls(controls) {
  const pauses = controls.pauses || [];
  $("pauses").replaceChildren(...(pauses.length ? pauses.map((p) =>
    el("li", {class: "pause", text: `Paused: ${p.tenant ?? "every tenant"}, ` +
      `${p.priority ?? "every priority"} (by ${p.by}, ` +
      `${new Date(p.at_ms).toLocaleString()})`})) :
    [el("li", {class: "muted", text: "Nothing is paused."})]));
  shownLimits = controls.limits || {};
  const overridden = new Set(controls.overridden || []);
  $("limits").replaceChildren(...LIMITS.flatMap((name) => [
    el("label", {for: `limit-${name}`, text: label(name)}),
    el("input", {id: `limit-${name}`, type: "number", min: 0,
                 step: name === "tenant_rps" ? "any" : 1, value: shownLimits[name],
                 "data-overridden": overridden.has(name) ? "yes" : "no"}),
  ]));
}

/** One row per analyzer of the group (as /api/queue/stats names them), with its actions. */
function renderConsumers(names) {
  $("consumers").replaceChildren(...(names.length ? names.map((name) => {
    const drain = el("button", {type: "button", class: "cancel drain", text: "Drain…"});
    drain.addEventListener("click", () => drainConsumer(name, false));
    const undo = el("button", {type: "button", class: "undrain", text: "Put back to work"});
    undo.addEventListener("click", () => drainConsumer(name, true));
    return el("li", {class: "consumer", "data-consumer": name},
              el("code", {text: name}), " ", drain, " ", undo);
  }) : [el("li", {class: "muted", text: "No analyzer has joined the group."})]));
}

/** Drain after a confirmation (it hands back running scans); undo needs none. */
async function drainConsumer(name, undo) {
  if (!undo && !window.confirm(`Drain analyzer ${name}? It hands back its running scans ` +
                               "and takes no work until it is put back to work.")) {
    $("drain-status").textContent = "not done";
    return;
  }
  await operate("drain-status", "/api/admin/drain", {consumer: name, undo}, (r) =>
    r.delivered === 0 ? `${r.consumer}: no analyzer is listening right now; send it again` :
    `${r.consumer}: ${r.draining ? "draining" : "taking work again"}`);
}

function renderAudit(entries) {
  $("audit-list").replaceChildren(...entries.map((e) =>
    el("tr", {"data-action": e.action},
      el("td", {text: new Date(e.at_ms).toLocaleString()}),
      el("td", {class: "who", text: e.who}),
      el("td", {class: "action", text: e.action}),
      el("td", {class: "detail", text: e.detail}))));
}

/** One operator call: its outcome in ``statusId``, then the controls and audit again. */
async function operate(statusId, path, body, success) {
  const mine = epoch;
  const status = $(statusId);
  status.textContent = "…";
  try {
    const answer = await api(path.endsWith("/limits") ? "PATCH" : "POST", path, body);
    if (mine !== epoch) return null;
    status.textContent = success(answer);
    loadOperator(mine);
    return answer;
  } catch (err) {
    if (mine !== epoch) return null;
    status.textContent = err.message;
    if (err.status === 401 || err.status === 0 || err.status >= 500) report(err, null);
    return null;
  }
}

function pauseTarget() {
  const target = {};
  const tenant = $("pause-tenant").value.trim();
  if (tenant) target.tenant = tenant;
  if ($("pause-priority").value) target.priority = $("pause-priority").value;
  return target;
}

function changedLimits() {
  const patch = {};
  for (const name of LIMITS) {
    const raw = $(`limit-${name}`).value.trim();
    if (raw === "") patch[name] = null; // back to the setting
    else if (Number(raw) !== shownLimits[name]) patch[name] = Number(raw);
  }
  return patch;
}

function deadFilter() {
  const filter = {};
  const tenant = $("bulk-tenant").value.trim();
  const kind = $("bulk-kind").value.trim();
  if (tenant) filter.tenant = tenant;
  if (kind) filter.kind = kind;
  return filter;
}

/** Count first (a dry run), then ask before doing what cannot be undone. */
async function confirmed(statusId, path, body, verb, what) {
  const counted = await operate(statusId, path, {...body, dry_run: true},
                                (r) => `${r.matched} ${what} match`);
  if (!counted || counted.matched === 0) return;
  if (!window.confirm(`${verb} ${counted.matched} ${what}?`)) {
    $(statusId).textContent = "not done";
    return;
  }
  await operate(statusId, path, body, (r) => `${verb}: ${r.done} of ${r.matched} ${what}`);
  refreshDeadSoon();
}

// --- scan list: GET /api/scans, per state, filtered, paged -----------------------------------
//
// The pages shown are a stack of cursors: "Older" pushes the `next` of the page on display,
// "Newer" pops back. The newest page reloads itself every few seconds; older pages stay put.

const SCANS_EVERY_MS = 5000;
let scanCursors = [null]; // the cursor of each page from the newest to the one shown
let scanNext = null;
let scanSeq = 0; // only the latest request may draw
let scanTimer = null;

function scanQuery() {
  const query = new URLSearchParams();
  const state = document.querySelector('#scans-tabs button[aria-pressed="true"]');
  if (state && state.dataset.state) query.set("state", state.dataset.state);
  const q = $("scans-q").value.trim();
  if (q) query.set("q", q);
  if ($("scans-priority").value) query.set("priority", $("scans-priority").value);
  const tenant = $("scans-tenant").value.trim();
  if (tenant && !$("scans-tenant-box").hidden) query.set("tenant", tenant);
  const limit = Number.parseInt($("scans-limit").value, 10);
  query.set("limit", String(Number.isFinite(limit) ? Math.max(1, Math.min(100, limit)) : 20));
  return query;
}

async function loadScans() {
  clearTimeout(scanTimer);
  const mine = epoch;
  const seq = ++scanSeq;
  const cursor = scanCursors[scanCursors.length - 1];
  const query = scanQuery();
  if (cursor) query.set("cursor", cursor);
  show($("scans-error"), "");
  try {
    const page = await api("GET", `/api/scans?${query}`);
    if (mine !== epoch || seq !== scanSeq) return;
    scanNext = page.next || null;
    renderScans(page.items || []);
  } catch (err) {
    if (mine !== epoch || seq !== scanSeq) return;
    report(err, $("scans-error"));
  }
  if (mine === epoch && seq === scanSeq && scanCursors.length === 1) {
    scanTimer = setTimeout(loadScans, SCANS_EVERY_MS);
  }
}

/** Back to the newest page of the current filters. */
function reloadScans() {
  scanCursors = [null];
  scanNext = null;
  loadScans();
}

function renderScans(items) {
  const newest = scanCursors.length === 1;
  $("scans-older").disabled = !scanNext;
  $("scans-newer").disabled = newest;
  $("scans-page").textContent = newest ? "newest first" : `page ${scanCursors.length}`;
  const list = $("scans-list");
  if (!items.length) {
    list.replaceChildren(el("tr", {class: "empty"},
      el("td", {colspan: 8, class: "muted", text: "No scans match."})));
    return;
  }
  list.replaceChildren(...items.map(scanRow));
}

function scanRow(s) {
  const open = el("button", {type: "button", class: "link", text: s.scan_id});
  open.addEventListener("click", () => lookup(s.scan_id));
  return el("tr", {"data-scan-id": s.scan_id, "data-state": s.state},
    el("td", {class: "created", text: when(s.created_at)}),
    el("td", {class: "scan"}, open),
    el("td", {class: "product", text: s.product_name}),
    el("td", {class: "state"}, el("span", {class: "badge", "data-state": s.state, text: s.state})),
    el("td", {class: "priority", text: s.priority}),
    el("td", {class: "stage"}, progressBar(s.percentage), el("span", {text: label(s.stage)})),
    el("td", {class: "tenant", text: s.tenant}),
    el("td", {class: "updated", text: when(s.updated_at)}));
}

function clearScans() {
  clearTimeout(scanTimer);
  scanCursors = [null];
  scanNext = null;
  $("scans-list").replaceChildren();
  $("scans-page").textContent = "";
  $("scans-older").disabled = $("scans-newer").disabled = true;
  $("scans-tenant-box").hidden = true;
  show($("scans-error"), "");
}

function wireScans() {
  for (const tab of document.querySelectorAll("#scans-tabs button")) {
    tab.addEventListener("click", () => {
      for (const other of document.querySelectorAll("#scans-tabs button")) {
        other.setAttribute("aria-pressed", String(other === tab));
      }
      reloadScans();
    });
  }
  $("scans-filters").addEventListener("submit", (e) => {
    e.preventDefault();
    reloadScans();
  });
  $("scans-priority").addEventListener("change", reloadScans);
  $("scans-older").addEventListener("click", () => {
    if (!scanNext) return;
    scanCursors.push(scanNext);
    loadScans();
  });
  $("scans-newer").addEventListener("click", () => {
    if (scanCursors.length > 1) scanCursors.pop();
    loadScans();
  });
}

// --- wiring ----------------------------------------------------------------------------------

/** Empty every panel: what one key was shown is not left on screen for the next. */
function clearPanels() {
  $("stats").replaceChildren(el("p", {class: "muted", text: "Enter an API key to see the queue."}));
  $("stats-updated").textContent = "";
  rows.clear();
  $("feed").replaceChildren();
  lastEventId = "";
  shownScan = null;
  outcomes.clear();
  $("detail").replaceChildren();
  show($("lookup-error"), "");
  retried.clear();
  deadWanted = deadCursor = deadNext = null;
  $("dead-list").replaceChildren();
  $("dead-older").disabled = true;
  $("dead-page").textContent = "";
  show($("dead-error"), "");
  $("operator").hidden = true;
  $("pauses").replaceChildren();
  $("consumers").replaceChildren();
  $("drain-status").textContent = "";
  $("limits").replaceChildren();
  $("audit-list").replaceChildren();
  clearScans();
  for (const id of ["pause-status", "limits-status", "bulk-status", "cancel-queued-status"]) {
    $(id).textContent = "";
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const key = $("key-input").value.trim();
    if (!key) {
      showAlert("Enter an API key.");
      return;
    }
    sessionStorage.setItem(KEY_STORAGE, key);
    $("key-input").value = "";
    stop();
    clearPanels();
    start();
  });
  $("key-forget").addEventListener("click", () => {
    stop();
    clearPanels();
    sessionStorage.removeItem(KEY_STORAGE);
    $("key-status").textContent = "no key";
    $("key-status").dataset.state = "none";
    showAlert("");
  });
  $("lookup-form").addEventListener("submit", (e) => {
    e.preventDefault();
    lookup($("lookup-input").value);
  });
  $("dead-newest").addEventListener("click", () => loadDead(null));
  $("dead-older").addEventListener("click", () => { if (deadNext) loadDead(deadNext); });
  $("pause").addEventListener("click", () =>
    operate("pause-status", "/api/admin/pause", pauseTarget(), () => "paused"));
  $("resume").addEventListener("click", () =>
    operate("pause-status", "/api/admin/resume", pauseTarget(), () => "resumed"));
  $("limits-apply").addEventListener("click", () =>
    operate("limits-status", "/api/admin/limits", changedLimits(), () => "applied"));
  $("bulk-count").addEventListener("click", () =>
    operate("bulk-status", "/api/admin/dead/retry", {...deadFilter(), dry_run: true},
            (r) => `${r.matched} dead letters match`));
  $("bulk-retry").addEventListener("click", () =>
    confirmed("bulk-status", "/api/admin/dead/retry", deadFilter(), "Retry", "dead letters"));
  $("bulk-purge").addEventListener("click", () =>
    confirmed("bulk-status", "/api/admin/dead/purge", deadFilter(), "Purge", "dead letters"));
  $("cancel-queued").addEventListener("click", () => {
    const tenant = $("queue-tenant").value.trim();
    if (!tenant) {
      $("cancel-queued-status").textContent = "Name a tenant.";
      return;
    }
    confirmed("cancel-queued-status", "/api/admin/cancel-queued", {tenant}, "Cancel",
              "waiting scans");
  });
  wireScans();
  if (sessionStorage.getItem(KEY_STORAGE)) start();
});
