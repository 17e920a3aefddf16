// labelscan admin dashboard: the webhooks panel (endpoints, their deliveries, redeliver).
//
// Loaded after dashboard.js, whose helpers it uses (el, api, when, show, report); like it,
// every value from the API goes into the page as text only.
"use strict";

const HOOKS_PAGE = 20;
let hooksEpoch = 0;
let hooksShown = null; // the endpoint whose deliveries are listed
let hooksNext = null;

function hooksClear() {
  hooksEpoch += 1;
  hooksShown = hooksNext = null;
  $("webhook-list").replaceChildren();
  $("delivery-list").replaceChildren();
  $("deliveries").hidden = true;
  show($("webhooks-error"), "");
}

async function loadWebhooks() {
  const mine = ++hooksEpoch;
  show($("webhooks-error"), "");
  let answer;
  try {
    answer = await api("GET", "/api/webhooks");
  } catch (err) {
    if (mine === hooksEpoch) report(err, $("webhooks-error"));
    return;
  }
  if (mine !== hooksEpoch) return;
  $("webhook-list").replaceChildren(...answer.items.map(webhookRow));
  if (!answer.items.length) {
    $("webhook-list").replaceChildren(
      el("tr", {}, el("td", {colspan: 6, class: "muted", text: "No endpoints."})));
  }
}

function webhookRow(hook) {
  const state = hook.enabled ? "enabled" : `disabled: ${hook.disabled_reason || "by its owner"}`;
  const open = el("button", {type: "button", class: "link", text: "Deliveries"});
  open.addEventListener("click", () => loadDeliveries(hook.id, null));
  return el("tr", {"data-endpoint-id": hook.id},
    el("td", {class: "url", text: hook.url}),
    el("td", {class: "events", text: hook.events.join(", ")}),
    el("td", {class: "tenant", text: hook.tenant}),
    el("td", {class: "state", text: state}),
    el("td", {class: "failures", text: String(hook.failures)}),
    el("td", {}, open));
}

async function loadDeliveries(endpointId, cursor) {
  const mine = hooksEpoch;
  hooksShown = endpointId;
  const query = new URLSearchParams({limit: String(HOOKS_PAGE)});
  if (cursor) query.set("cursor", cursor);
  let page;
  try {
    page = await api("GET", `/api/webhooks/${endpointId}/deliveries?${query}`);
  } catch (err) {
    if (mine === hooksEpoch) report(err, $("webhooks-error"));
    return;
  }
  if (mine !== hooksEpoch || hooksShown !== endpointId) return;
  hooksNext = page.next;
  $("deliveries").hidden = false;
  $("deliveries").dataset.endpointId = endpointId;
  $("delivery-older").disabled = !hooksNext;
  $("delivery-list").replaceChildren(...page.items.map((d) => deliveryRow(endpointId, d)));
}

function deliveryRow(endpointId, d) {
  const status = el("span", {class: "action-status muted"});
  const again = el("button", {type: "button", class: "retry", text: "Redeliver"});
  again.addEventListener("click", async () => {
    again.disabled = true;
    try {
      const state = await api(
        "POST", `/api/webhooks/${endpointId}/deliveries/${d.id}/redeliver`);
      status.textContent = `redelivering (${state.status})`;
      setTimeout(() => { if (hooksShown === endpointId) loadDeliveries(endpointId, null); }, 1500);
    } catch (err) {
      status.textContent = err.message;
    } finally {
      again.disabled = false;
    }
  });
  const code = d.last_status_code === null ? "—" : String(d.last_status_code);
  const latency = d.last_latency_ms === null ? "—" : `${d.last_latency_ms} ms`;
  return el("tr", {"data-delivery-id": d.id},
    el("td", {class: "when", text: when(d.created_at)}),
    el("td", {class: "type", text: d.type}),
    el("td", {class: "scan", text: d.scan_id || (d.batch_id ? `batch ${d.batch_id}` : "")}),
    el("td", {class: "status", text: d.status}),
    el("td", {class: "attempts", text: String(d.attempts)}),
    el("td", {class: "code", text: code}),
    el("td", {class: "latency", text: latency}),
    el("td", {class: "error", text: d.last_error || ""}),
    el("td", {}, again, status));
}

document.addEventListener("DOMContentLoaded", () => {
  $("key-form").addEventListener("submit", () => {
    hooksClear();
    if (sessionStorage.getItem(KEY_STORAGE)) loadWebhooks();
  });
  $("key-forget").addEventListener("click", hooksClear);
  $("webhooks-refresh").addEventListener("click", () => {
    loadWebhooks();
    if (hooksShown) loadDeliveries(hooksShown, null);
  });
  $("delivery-older").addEventListener("click", () => {
    if (hooksShown && hooksNext) loadDeliveries(hooksShown, hooksNext);
  });
  if (sessionStorage.getItem(KEY_STORAGE)) loadWebhooks();
});
