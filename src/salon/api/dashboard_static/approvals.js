// Salon dashboard, the approvals panel: tool calls waiting for a person's OK, with
// Approve / Deny buttons (the admin API's decision, sent with the page's CSRF token).
// Shown only while the snapshot has `approvals` (the gateway has approvals on).
"use strict";

(() => {
const { PANELS, post, refresh, el, pill, clock } = window.SalonDashboard;

let approvalsShown = "";

function decideButton(record, verb, label) {
  const button = el("button", { type: "button", "data-decide": verb }, label);
  button.addEventListener("click", async () => {
    button.disabled = true;
    const result = await post(`/approvals/${encodeURIComponent(record.id)}/${verb}`);
    const note = button.parentElement.querySelector(".decided");
    note.textContent = result.ok ? `${result.data.state}` : (result.data.error ? result.data.error.message : `failed (${result.status})`);
    button.disabled = false;
    refresh();
  });
  return button;
}

PANELS.approvals = (section, value, snap) => {
  const seen = JSON.stringify(value);
  if (seen === approvalsShown) return; // keep focus on a button while nothing changed
  approvalsShown = seen;
  const rows = value.pending.map((r) =>
    el("tr", { "data-approval": r.id, "data-state": r.state },
      el("td", { class: "num" }, clock(r.created_at)),
      el("td", {}, r.agent_id),
      el("td", {}, r.tool),
      el("td", { class: "text" }, el("pre", { class: "args" }, JSON.stringify(r.arguments, null, 2).slice(0, 2000))),
      el("td", { class: "text" }, r.for_user || "–"),
      el("td", { class: "num" }, `${Math.max(0, Math.round((r.deadline_at - snap.now_ms) / 60000))} min`),
      el("td", {}, decideButton(r, "approve", "Approve"), " ", decideButton(r, "deny", "Deny"),
        el("span", { class: "decided", role: "status" }))));
  if (!rows.length) rows.push(el("tr", {}, el("td", { colSpan: 7, class: "muted" }, "Nothing waits for an OK.")));
  const recent = value.recent.map((r) =>
    el("li", { "data-approval": r.id, "data-state": r.state }, pill(r.state), ` ${clock(r.decided_at)} ${r.agent_id}: ${r.tool}`,
      r.decided_by ? ` (by ${r.decided_by})` : "", r.reason ? el("span", { class: "err" }, ` ${r.reason}`) : null));
  const head = el("tr", {}, ...["Asked", "Agent", "Tool", "Arguments", "For", "Time left", ""].map((h) => el("th", { scope: "col" }, h)));
  section.querySelector(".panel-body").replaceChildren(
    el("div", { class: "scroll" }, el("table", { id: "approvals-table" }, el("thead", {}, head), el("tbody", {}, ...rows))),
    recent.length ? el("details", {}, el("summary", {}, `Decided lately (${recent.length})`), el("ul", {}, ...recent)) : "");
  const count = value.pending.length;
  document.querySelector('[data-nav="approvals"]').textContent = count ? `Approvals (${count})` : "Approvals";
};
})();
