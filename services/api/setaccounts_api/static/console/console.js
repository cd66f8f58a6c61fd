// The jobs console: lists the jobs the signed-in caller may see (GET /fhir/R4/job), refreshes them while
// the page is open, cancels a running one (DELETE …/status) and shows one job with the resources it changed.
import { currentToken, devSignIn, finishOidc, signOut, startOidc } from "./auth.js";

const API = new URL("../fhir/R4/", location.href);
const REFRESH_MS = 700;
const $ = (id) => document.getElementById(id);
const state = { config: null, cursors: [null], next: null, filters: {}, detail: null, changesCursor: null, timer: null };

function say(text) { $("message").textContent = text || ""; }

function el(tag, text, attrs = {}) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = text;
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  return node;
}

function when(iso) { return iso ? new Date(iso).toISOString().replace("T", " ").slice(0, 19) + "Z" : "–"; }
function list(refs) { return refs == null ? "?" : refs.length ? refs.join(", ") : "none"; }
function final(job) { return ["completed", "error", "cancelled"].includes(job.status); }

async function call(path, options = {}) {
  const saved = currentToken();
  if (!saved) { showSignIn(); throw new Error("signed out"); }
  const headers = { Authorization: `Bearer ${saved.token}`, Accept: "application/json" };
  const answer = await fetch(new URL(path, API), { ...options, headers });
  if (answer.status === 401) { signOut(); showSignIn("Your session ended; sign in again."); throw new Error("401"); }
  const body = await answer.json().catch(() => null);
  if (!answer.ok && answer.status !== 202) throw new Error(body?.issue?.[0]?.diagnostics || `the API answered ${answer.status}`);
  return body;
}

function progressCell(job) {
  const cell = el("td");
  const bar = el("progress", null, { "aria-label": `progress of ${job.id}` });
  const { done, total } = job.progress;
  if (total) { bar.max = total; bar.value = Math.min(done, total); }
  cell.append(bar);
  const of = total ? ` of ${total}` : "";
  const planned = job.planned ? "planned" : "planning";
  cell.append(el("div", `${done}${of} · ${planned} · changed ${job.resources_changed}`, { class: "counts" }));
  return cell;
}

function outcomeText(job) {
  if (job.status === "error") return job.outcome?.issue?.[0]?.diagnostics || `failed (${job.http_status || "?"})`;
  if (job.status === "cancelled") return `cancelled by ${job.cancelled_by || "?"}`;
  if (job.status === "completed") return `${job.resources_updated} updated, ${job.resources_changed} changed`;
  return "";
}

function jobRow(job) {
  const row = el("tr", null, { "data-job-id": job.id, class: job.status });
  const open = el("button", job.id.slice(0, 8), { type: "button", class: "link", title: job.id });
  open.addEventListener("click", () => openDetail(job.id));
  row.append(el("td")); row.lastChild.append(open);
  row.append(el("td", job.target), el("td", job.status, { class: "status" }), progressCell(job));
  row.append(el("td", job.requested_by || "–", { class: "requester" }));
  row.append(el("td", `${list(job.accounts_before)} → ${list(job.accounts_after)}`));
  row.append(el("td", when(job.created_at)), el("td", when(job.updated_at)), el("td", outcomeText(job), { class: "outcome" }));
  const actions = el("td");
  if (!final(job)) {
    const cancel = el("button", "Cancel", { type: "button", class: "cancel" });
    cancel.addEventListener("click", () => cancelJob(job.id));
    actions.append(cancel);
  }
  row.append(actions);
  return row;
}

async function refresh() {
  clearTimeout(state.timer);
  try {
    const params = new URLSearchParams({ _count: "20" });
    for (const [name, value] of Object.entries(state.filters)) if (value) params.set(name, value);
    const cursor = state.cursors[state.cursors.length - 1];
    if (cursor) params.set("cursor", cursor);
    const page = await call(`job?${params}`);
    $("jobs").tBodies[0].replaceChildren(...page.jobs.map(jobRow));
    $("empty").hidden = page.jobs.length > 0;
    state.next = page.next_cursor;
    $("older").disabled = !state.next;
    $("newer").disabled = state.cursors.length < 2;
    if (state.detail) await refreshDetail();
  } catch (error) {
    if (!currentToken()) return;
    say(error.message);
  }
  state.timer = setTimeout(refresh, REFRESH_MS);
}

async function cancelJob(id) {
  try {
    await call(`job/${encodeURIComponent(id)}/status`, { method: "DELETE" });
    say(`job ${id} cancelled`);
  } catch (error) {
    say(`cancel refused: ${error.message}`);
  }
  await refresh();
}

function traceNode(traceId) {
  if (!traceId) return el("span", "none");
  if (!state.config.trace_url) return el("span", traceId, { class: "trace" });
  const href = state.config.trace_url.replace("{trace_id}", encodeURIComponent(traceId));
  return el("a", traceId, { href, class: "trace", target: "_blank", rel: "noopener" });
}

async function refreshDetail() {
  const job = await call(`job/${encodeURIComponent(state.detail)}`);
  const fields = [
    ["status", job.status], ["target", job.target], ["mode", `${job.mode}${job.propagate ? ", propagated" : ""}`],
    ["given accounts", list(job.accounts)], ["accounts before", list(job.accounts_before)],
    ["accounts after", list(job.accounts_after)], ["requested by", job.requested_by || "–"],
    ["requested at", when(job.requested_at)], ["updated at", when(job.updated_at)],
    ["members", `${job.processed} processed of ${job.expected ?? "?"}${job.planned ? "" : " (estimate)"}`],
    ["resources", `${job.resources_updated} updated, ${job.resources_changed} changed`],
    ["outcome", outcomeText(job) || "–"],
  ];
  const list_ = $("detail-fields");
  list_.replaceChildren();
  for (const [name, value] of fields) list_.append(el("dt", name), el("dd", value));
  list_.append(el("dt", "trace"), el("dd")); list_.lastChild.append(traceNode(job.trace_id));
}

async function loadChanges(more) {
  const params = new URLSearchParams({ _count: "50" });
  if (more && state.changesCursor) params.set("cursor", state.changesCursor);
  const page = await call(`job/${encodeURIComponent(state.detail)}/changes?${params}`);
  const body = $("changes").tBodies[0];
  const rows = page.resources.map((r) => {
    const row = el("tr", null, { "data-reference": r.reference });
    row.append(el("td", r.reference), el("td", String(r.version)), el("td", r.current ? "yes" : "no"));
    row.append(el("td", list(r.accounts)), el("td", when(r.last_updated)));
    return row;
  });
  if (more) body.append(...rows); else body.replaceChildren(...rows);
  state.changesCursor = page.next_cursor;
  $("more-changes").hidden = !page.next_cursor;
  $("no-changes").hidden = body.rows.length > 0;
}

async function openDetail(id) {
  state.detail = id;
  $("detail-id").textContent = id;
  $("detail").hidden = false;
  try {
    await refreshDetail();
    await loadChanges(false);
  } catch (error) {
    say(error.message);
  }
}

function showSignIn(message) {
  clearTimeout(state.timer);
  say(message);
  $("who").hidden = true;
  $("jobs-view").hidden = true;
  $("sign-in").hidden = false;
  const { oidc, dev_sign_in: dev } = state.config;
  $("oidc-sign-in").hidden = !oidc;
  $("dev-sign-in").hidden = !dev;
  $("no-sign-in").hidden = Boolean(oidc || dev);
}

function showJobs() {
  $("sign-in").hidden = true;
  $("who").hidden = false;
  $("who-name").textContent = `signed in as ${currentToken().subject}`;
  $("jobs-view").hidden = false;
  refresh();
}

function wire() {
  $("oidc-sign-in").addEventListener("click", () => startOidc(state.config.oidc).catch((e) => say(e.message)));
  $("dev-sign-in").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    const accounts = String(form.get("accounts") || "").split(/[\s,]+/).filter(Boolean);
    try {
      await devSignIn(String(form.get("subject")), form.get("admin") === "on", accounts);
      say("");
      showJobs();
    } catch (error) {
      say(error.message);
    }
  });
  $("sign-out").addEventListener("click", () => { signOut(); showSignIn("Signed out."); });
  $("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    state.filters = Object.fromEntries(new FormData(event.target));
    state.cursors = [null];
    refresh();
  });
  $("older").addEventListener("click", () => { if (state.next) { state.cursors.push(state.next); refresh(); } });
  $("newer").addEventListener("click", () => { if (state.cursors.length > 1) { state.cursors.pop(); refresh(); } });
  $("more-changes").addEventListener("click", () => loadChanges(true).catch((e) => say(e.message)));
  $("close-detail").addEventListener("click", () => { state.detail = null; $("detail").hidden = true; });
}

async function main() {
  state.config = await (await fetch("config.json")).json();
  wire();
  let refused = "";
  try {
    await finishOidc(state.config.oidc);
  } catch (error) {
    refused = error.message;  // shown with the sign-in, which would otherwise clear it
  }
  if (currentToken()) showJobs(); else showSignIn(refused);
}

main();
