// labelscan seller page: plain DOM, no framework, no build step.
//
// One label is one POST /api/scans (multipart), followed on its own EventSource. Several
// are one POST /api/batches (multipart, one `image` part each: all accepted or none),
// followed on ONE EventSource on the tenant's stream (GET /api/events-url), opened before
// the batch is sent so no event is missed, and routed to each scan's card by scan_id: a
// browser opens only six connections per server, so a stream per scan would stall the
// seventh. Every EventSource resumes by itself with Last-Event-ID after a dropped
// connection; a refused reconnect (an expired token) gets a fresh link and resumes from
// the last event id. Everything from the API reaches the page as text: the CSP enforces
// Trusted Types, so a string put into an HTML sink would throw.
"use strict";

const KEY_STORAGE = "labelscan.apiKey";
const TERMINAL = new Set(["completed", "failed", "cancelled"]);
const EVENT_TYPES = ["scheduled", "queued", "progress", "retrying", "completed", "failed",
                     "cancelled"];
const STATUS_ORDER = {fail: 0, unclear: 1, pass: 2};
const SEVERITY_ORDER = {critical: 0, major: 1, minor: 2, info: 3};
const VERDICT_ORDER = {non_compliant: 0, needs_review: 1, compliant: 2};
const OPEN_WAIT_MS = 10000;  // how long a batch waits for its event stream before giving up
const EARLY_MAX = 10000;     // events kept for scans whose batch answer has not arrived yet

let pending = [];  // $ and el come from dom.js

function alertUser(message) {
  $("alert").textContent = message || "";
  $("alert").hidden = !message;
}

// --- the key -------------------------------------------------------------------------

const key = () => sessionStorage.getItem(KEY_STORAGE);

function showKey() {
  $("key-status").textContent = key() ? "key set" : "no key";
}

async function api(method, path, body) {
  const headers = {};
  if (key()) headers.Authorization = `Bearer ${key()}`;
  let response;
  try {
    response = await fetch(path, {method, headers, body});
  } catch (err) {
    throw new Error(`Network error: ${err.message}`);
  }
  const data = await response.json().catch(() => ({}));
  if (response.status === 401) {
    sessionStorage.removeItem(KEY_STORAGE);
    showKey();
    throw new Error("Bad key: the gateway answered 401");
  }
  if (!response.ok) {
    const where = data.field ? ` (${data.field})` : "";
    const err = new Error(`${data.error || response.status}: ${data.detail || ""}${where}`);
    err.items = Array.isArray(data.errors) ? data.errors : [];  // a refused batch's, by index
    err.status = response.status;
    err.retryAfter = Number(response.headers.get("retry-after")) || 1;
    throw err;
  }
  return data;
}

// --- picking labels ---------------------------------------------------------------------

function addFiles(files) {
  for (const file of files) {
    if (file.type.startsWith("image/")) pending.push(file);
  }
  $("picked").replaceChildren(...pending.map((f) => el("li", {text: f.name})));
}

function marketplaces() {
  return [...$("marketplaces").querySelectorAll("input:checked")].map((box) => box.value);
}

const stem = (name) => name.replace(/\.[^.]*$/, "").slice(0, 200) || "label";

// --- one scan's card ----------------------------------------------------------------------

class ScanCard {
  /** A card for a scan; it listens on its own stream unless a BatchFeed routes to it. */
  constructor(file, accepted, feed) {
    this.id = accepted.scan_id;
    this.lastEventId = null;
    this.seen = new Set();  // event ids applied: a resume from an older id repeats none
    this.done = false;
    this.source = null;
    this.relinkMs = 500;
    this.state = el("span", {class: "state", text: accepted.status});
    this.conn = el("span", {class: "conn", text: "connecting"});
    this.bar = el("progress", {max: 100, value: 0});
    this.pct = el("span", {class: "pct", text: "0 %"});
    this.stage = el("span", {class: "stage", text: "queued"});
    this.message = el("span", {class: "message"});
    this.steps = el("ol", {class: "steps"});
    this.outcome = el("div", {class: "outcome"});
    this.node = el(
      "article", {class: "scan", "data-scan-id": this.id},
      el("h3", {}, el("span", {class: "name", text: file.name}), this.state, this.conn),
      el("div", {class: "bar"}, this.bar, this.pct, this.stage, this.message),
      this.steps,
      this.outcome,
    );
    $("scans").prepend(this.node);
    $("empty").hidden = true;
    if (feed) feed.follow(this);
    else this.listen(accepted.events_url);
  }

  listen(url) {
    const source = new EventSource(url);
    this.source = source;
    source.onopen = () => {
      this.conn.textContent = "live";
      this.relinkMs = 500;
    };
    source.onerror = () => {
      if (source.readyState === EventSource.CONNECTING) {
        this.conn.textContent = "reconnecting";  // the browser resumes with Last-Event-ID
      } else if (this.source === source) {
        this.conn.textContent = "reconnecting";
        this.relink();  // refused (an expired token): a fresh link, from the last id
      }
    };
    for (const type of EVENT_TYPES) {
      source.addEventListener(type, (e) => this.onEvent(e, JSON.parse(e.data)));
    }
    source.addEventListener("reset", (e) => this.onEvent(e, JSON.parse(e.data)));
  }

  async relink() {
    this.source.close();
    // A stream refused again and again (not only an expired token) is asked for less often.
    await new Promise((resolve) => setTimeout(resolve, this.relinkMs));
    this.relinkMs = Math.min(this.relinkMs * 2, 30000);
    try {
      const link = await api("GET", `/api/scans/${this.id}/events-url`);
      const url = new URL(link.events_url);
      if (this.lastEventId) url.searchParams.set("last_event_id", this.lastEventId);
      this.listen(url.toString());
    } catch (err) {
      this.conn.textContent = "lost";
      alertUser(err.message);
    }
  }

  onEvent(e, data) {
    if (this.done || (e.lastEventId && this.seen.has(e.lastEventId))) return;
    if (e.lastEventId) {
      this.lastEventId = e.lastEventId;
      this.seen.add(e.lastEventId);
    }
    const progress = data.progress || {};
    this.state.textContent = data.state || this.state.textContent;
    this.bar.value = Number(progress.percentage) || 0;
    this.pct.textContent = `${this.bar.value} %`;
    this.stage.textContent = progress.stage || "";
    this.message.textContent = progress.message || "";
    this.steps.append(el("li", {"data-stage": progress.stage || "", text:
      `${this.bar.value} % ${progress.stage || ""}: ${progress.message || ""}`}));
    if (TERMINAL.has(data.state)) this.finish();
  }

  async finish() {
    this.done = true;
    if (this.source) this.source.close();
    this.conn.textContent = "done";
    // A batch's scans may end together: over the key's request rate, wait as told.
    for (let attempt = 1; ; attempt += 1) {
      try {
        this.show(await api("GET", `/api/scans/${this.id}`));
        return;
      } catch (err) {
        if (err.status !== 429 || attempt >= 5) {
          alertUser(err.message);
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, err.retryAfter * 1000));
      }
    }
  }

  show(detail) {
    this.state.textContent = detail.state;
    const parts = [];
    if (detail.error) {
      parts.push(el("p", {class: "error", text: `${detail.error.kind}: ${detail.error.message}`}));
    }
    const analysis = detail.result && detail.result.analysis;
    if (analysis) {
      parts.push(el("p", {}, "Verdict: ",
        el("span", {class: "verdict", "data-verdict": analysis.verdict, text: analysis.verdict})));
      parts.push(el("p", {class: "summary", text: analysis.summary}));
      const reports = [...analysis.marketplaces].sort(
        (a, b) => VERDICT_ORDER[a.verdict] - VERDICT_ORDER[b.verdict]);
      for (const report of reports) parts.push(...marketplaceTable(report));
    }
    this.outcome.replaceChildren(...parts);
  }
}

// --- one stream for a batch's cards ---------------------------------------------------------

class BatchFeed {
  constructor() {
    this.cards = new Map();
    this.early = [];  // events that came before the batch's answer named their scans
    this.closed = false;
    this.ready = false;  // the batch's answer has come: events of other scans are not ours
    this.lastEventId = null;
    this.source = null;
    this.relinkMs = 500;
  }

  /** Opens the tenant's stream; resolves once it is open (every later event reaches it). */
  async open() {
    const link = await api("GET", "/api/events-url");
    let timer;
    const late = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error("the event stream did not open")), OPEN_WAIT_MS);
    });
    try {
      await Promise.race([this.listen(link.events_url), late]);
    } catch (err) {
      this.close();
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  listen(url) {
    return new Promise((resolve, reject) => {
      const source = new EventSource(url);
      this.source = source;
      source.onopen = () => {
        this.conn("live");
        this.relinkMs = 500;
        resolve();
      };
      source.onerror = () => {
        if (this.source !== source) return;
        this.conn("reconnecting");  // CONNECTING: the browser resumes with Last-Event-ID
        if (source.readyState === EventSource.CLOSED) {
          if (this.cards.size) this.relink();  // refused (an expired token): a fresh link
          else reject(new Error("the event stream was refused"));
        }
      };
      for (const type of EVENT_TYPES) {
        source.addEventListener(type, (e) => this.route(e, JSON.parse(e.data)));
      }
      // The tenant's reset: the latest event of each of its scans, in place of the lost ones.
      source.addEventListener("reset", (e) => {
        for (const latest of JSON.parse(e.data).scans || []) this.route(e, latest);
      });
    });
  }

  async relink() {
    this.source.close();
    await new Promise((resolve) => setTimeout(resolve, this.relinkMs));
    this.relinkMs = Math.min(this.relinkMs * 2, 30000);
    if (this.closed) return;  // every card ended meanwhile
    try {
      const link = await api("GET", "/api/events-url");
      const url = new URL(link.events_url);
      if (this.lastEventId) url.searchParams.set("last_event_id", this.lastEventId);
      await this.listen(url.toString());
    } catch (err) {
      this.conn("lost");
      alertUser(err.message);
    }
  }

  route(e, data) {
    if (e.lastEventId) this.lastEventId = e.lastEventId;
    const card = this.cards.get(data.scan_id);
    if (card) card.onEvent(e, data);
    else if (!this.ready && this.early.length < EARLY_MAX) this.early.push([e, data]);
    if (this.ready && [...this.cards.values()].every((c) => c.done)) this.close();
  }

  follow(card) {
    this.cards.set(card.id, card);
    card.conn.textContent = this.source ? "live" : "connecting";
  }

  /** Every card of the batch exists: first the events that came before them. */
  started() {
    this.ready = true;
    const early = this.early;
    this.early = [];
    for (const [e, data] of early) this.route(e, data);
  }

  conn(text) {
    for (const card of this.cards.values()) {
      if (!card.done) card.conn.textContent = text;
    }
  }

  close() {
    this.closed = true;
    if (this.source) this.source.close();
    this.source = null;
  }
}

function marketplaceTable(report) {
  const findings = [...report.findings].sort((a, b) =>
    (STATUS_ORDER[a.status] - STATUS_ORDER[b.status]) ||
    (SEVERITY_ORDER[a.severity] - SEVERITY_ORDER[b.severity]));
  const rows = findings.map((f) => el(
    "tr", {"data-status": f.status},
    el("td", {class: "status", text: f.status}),
    el("td", {class: "severity", text: f.severity}),
    el("td", {class: "rule", text: f.rule}),
    el("td", {class: "requirement", text: f.requirement}),
    el("td", {class: "fix", text: f.fix || "—"}),
  ));
  return [
    el("h4", {"data-verdict": report.verdict, text: `${report.marketplace}: ${report.verdict}`}),
    el("table", {class: "findings", "data-marketplace": report.marketplace},
      el("thead", {}, el("tr", {}, ...["status", "severity", "rule", "requirement", "fix"]
        .map((h) => el("th", {text: h})))),
      el("tbody", {}, ...rows)),
  ];
}

// --- submitting ------------------------------------------------------------------------

async function submit(event) {
  event.preventDefault();
  alertUser("");
  if (!key()) { alertUser("Paste an API key first."); return; }
  const markets = marketplaces();
  if (!pending.length) { alertUser("Choose or drop at least one label image."); return; }
  if (!markets.length) { alertUser("Pick at least one marketplace."); return; }
  const files = pending;
  pending = [];
  $("picked").replaceChildren();
  if (files.length === 1) await submitOne(files[0], markets);
  else await submitBatch(files, markets);
}

function form(markets) {
  const body = new FormData();
  body.append("category", $("category").value);
  body.append("marketplaces", markets.join(","));
  return body;
}

async function submitOne(file, markets) {
  const body = form(markets);
  body.append("image", file, file.name);
  body.append("product_name", stem(file.name));
  try {
    new ScanCard(file, await api("POST", "/api/scans", body));
    $("submit-status").textContent = "1 of 1 sent";
  } catch (err) {
    alertUser(`${file.name}: ${err.message}`);
    $("submit-status").textContent = "0 of 1 sent";
  }
}

async function submitBatch(files, markets) {
  // Each file's name (without its extension) names its product, as for one scan.
  const body = form(markets);
  for (const file of files) body.append("image", file, file.name);
  const feed = new BatchFeed();
  try {
    await feed.open();
    const accepted = await api("POST", "/api/batches", body);
    accepted.scan_ids.forEach((id, i) => {
      new ScanCard(files[i], {scan_id: id, status: "queued"}, feed);
    });
    feed.started();
    $("submit-status").textContent =
      `${files.length} of ${files.length} sent as batch ${accepted.batch_id}`;
  } catch (err) {
    feed.close();
    // A refused batch wrote nothing: say which labels, by their position in it.
    const items = (err.items || []).map((item) =>
      `${files[item.index] ? files[item.index].name : `#${item.index}`}: ${item.reason}`);
    alertUser([err.message, ...items].join(" · "));
    $("submit-status").textContent = `0 of ${files.length} sent`;
  }
}

function setUp() {
  showKey();
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const value = $("key-input").value.trim();
    if (value) sessionStorage.setItem(KEY_STORAGE, value);
    $("key-input").value = "";
    showKey();
  });
  $("key-forget").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORAGE);
    showKey();
  });
  $("files").addEventListener("change", () => {
    addFiles($("files").files);
    $("files").value = "";
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    addFiles(e.dataTransfer.files);
  });
  $("scan-form").addEventListener("submit", submit);
}

setUp();
