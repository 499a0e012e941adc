// Four eyes in the browser: access request decisions, held commands beside the live screen, participants,
// pause. Everything received is inserted with textContent, never innerHTML.
"use strict";

(() => {
  const page = document.body.dataset.page;
  const api = (method, url, body) => Bastion.api(method, url, body);
  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    if (cls) node.className = cls;
    return node;
  }
  function button(text, cls, onClick) {
    const b = el("button", text, cls);
    b.type = "button";
    b.addEventListener("click", async () => {
      b.disabled = true;
      try { await onClick(); } catch (err) { Bastion.toast(err.message, true); b.disabled = false; }
    });
    return b;
  }

  // ---- access page: decide requests, held commands, break-glass reviews --------------------------------------
  if (page === "access") {
    for (const b of document.querySelectorAll("button[data-decide]")) {
      const row = b.closest("tr");
      b.addEventListener("click", async () => {
        b.disabled = true;
        try {
          const comment = row.querySelector(".decision-comment").value;
          await api("POST", `/api/access-requests/${encodeURIComponent(row.dataset.requestId)}/decision`,
            { decision: b.dataset.decide, comment });
          window.location.reload();
        } catch (err) { Bastion.toast(err.message, true); b.disabled = false; }
      });
    }
    for (const b of document.querySelectorAll("button[data-review]")) {
      const row = b.closest("tr");
      b.addEventListener("click", async () => {
        b.disabled = true;
        try {
          await api("POST", `/api/reviews/${encodeURIComponent(row.dataset.reviewId)}`, { decision: b.dataset.review });
          row.remove();
        } catch (err) { Bastion.toast(err.message, true); b.disabled = false; }
      });
    }
    for (const b of document.querySelectorAll("button[data-mark-reviewed]")) {
      const row = b.closest("tr");
      b.addEventListener("click", async () => {
        b.disabled = true;
        try {
          const comment = row.querySelector(".review-comment").value || "reviewed";
          await api("POST", `/api/access-requests/${encodeURIComponent(row.dataset.requestId)}/review`, { comment });
          window.location.reload();
        } catch (err) { Bastion.toast(err.message, true); b.disabled = false; }
      });
    }
    return;
  }

  // ---- dashboard: what waits for an approver, and break-glass access not yet reviewed ------------------------
  if (page === "dashboard") {
    const box = document.getElementById("foureyes-panel");
    if (!box) return;
    const banner = document.getElementById("break-glass-banner");
    async function refresh() {
      try {
        const [requests, held, glass] = await Promise.all([
          api("GET", "/api/access-requests?status=pending"), api("GET", "/api/reviews"),
          api("GET", "/api/access-requests?review=pending")]);
        const list = box.querySelector("ul");
        list.replaceChildren();
        for (const r of requests.items) {
          const li = el("li", `${r.username} asks for ${r.host_name || "category " + r.app_name} (${r.minutes} min): ${r.reason}`);
          list.appendChild(li);
        }
        for (const h of held.items) {
          const li = el("li", `held command of ${h.by} on ${h.target}: `);
          li.appendChild(el("code", h.command));
          li.appendChild(document.createTextNode(" "));
          li.appendChild(button("Approve", "primary small", () => api("POST", `/api/reviews/${h.id}`, { decision: "approve" }).then(refresh)));
          li.appendChild(button("Deny", "danger small", () => api("POST", `/api/reviews/${h.id}`, { decision: "deny" }).then(refresh)));
          list.appendChild(li);
        }
        if (!list.children.length) list.appendChild(el("li", "Nothing is waiting.", "muted"));
        box.querySelector(".count").textContent = String(requests.total + held.total);
        banner.hidden = glass.total === 0;
        banner.querySelector(".text").textContent = glass.items.map(
          (r) => `${r.username} → ${r.host_name || "category " + r.app_name}: ${r.reason}`).join("; ");
      } catch (err) { /* not an approver, or the bastion is away: leave the panel as it is */ }
    }
    refresh();
    setInterval(refresh, 3000);
    return;
  }

  // ---- live pages: terminal (owner), watch (auditor), join (participant) ------------------------------------------
  const ws = window.bastionSocket;
  if (!ws) return;
  const panel = document.getElementById("foureyes");
  const pausedBadge = document.getElementById("paused-badge");
  let sessionId = panel ? panel.dataset.sessionId || "" : "";

  function showPaused(frame) {
    if (!pausedBadge) return;
    pausedBadge.hidden = !frame;
    pausedBadge.textContent = frame ? `input paused by ${frame.by}: ${frame.reason}` : "";
    refit();
  }
  function showParticipants(frame) {
    const target = document.getElementById("participants");
    if (!target) return;
    target.replaceChildren();
    const names = frame.items.map((p) => `${p.username} (${p.mode})`);
    target.appendChild(el("span", names.length ? `with ${names.join(", ")}` : "no participants"));
    if (page !== "terminal") return;
    for (const p of frame.items) {
      target.appendChild(document.createTextNode(" "));
      target.appendChild(button(`Remove ${p.username}`, "small danger",
        () => api("DELETE", `/api/sessions/${encodeURIComponent(sessionId)}/participants/${encodeURIComponent(p.username)}`)));
    }
    refit();
  }
  function showReview(frame) {
    const list = document.getElementById("review-list");
    if (!list) return;
    const li = el("li", "", "review-item");
    li.dataset.reviewId = frame.id;
    li.appendChild(el("span", `${frame.by} wants to run `));
    li.appendChild(el("code", frame.command, "held-command"));
    li.appendChild(el("span", ` (rule ${frame.rule}) `, "muted"));
    li.appendChild(button("Approve", "primary small", () => api("POST", `/api/reviews/${encodeURIComponent(frame.id)}`, { decision: "approve" })));
    li.appendChild(button("Deny", "danger small", () => api("POST", `/api/reviews/${encodeURIComponent(frame.id)}`, { decision: "deny" })));
    list.appendChild(li);
    list.closest("section").hidden = false;
    refit();
  }
  function reviewDone(frame) {
    const item = document.querySelector(`li.review-item[data-review-id="${CSS.escape(String(frame.id))}"]`);
    if (item) item.remove();
    const list = document.getElementById("review-list");
    if (list && !list.children.length) list.closest("section").hidden = true;
    refit();
  }
  // the panel under the terminal changed height: the owner's terminal fits itself again (terminal.js listens)
  function refit() { window.dispatchEvent(new Event("resize")); }

  ws.addEventListener("message", (ev) => {
    if (typeof ev.data !== "string") return;
    let msg;
    try { msg = JSON.parse(ev.data); } catch (e) { return; }
    if (msg.type === "session" && !sessionId) sessionId = msg.id;
    else if (msg.type === "participants") showParticipants(msg);
    else if (msg.type === "paused") showPaused(msg);
    else if (msg.type === "resumed") showPaused(null);
    else if (msg.type === "review") showReview(msg);
    else if (msg.type === "review_done") reviewDone(msg);
  });

  if (!panel) return;
  const inviteForm = panel.querySelector("form.invite");
  if (inviteForm) {
    inviteForm.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const out = panel.querySelector(".invite-link");
      try {
        const data = await api("POST", `/api/sessions/${encodeURIComponent(sessionId)}/invites`, {
          username: inviteForm.elements.username.value, mode: inviteForm.elements.mode.value });
        out.hidden = false;
        out.textContent = `Send this link to ${data.username} (valid until ${Bastion.fmtTime(data.expires_at)}): ${location.origin}${data.url}`;
        refit();
      } catch (err) { Bastion.toast(err.message, true); }
    });
  }
  const pauseBtn = panel.querySelector("button.pause");
  if (pauseBtn) {
    pauseBtn.addEventListener("click", async () => {
      const reason = window.prompt("Reason for pausing this session's input (shown to the user):", "paused by security team");
      if (!reason) return;
      try { await api("POST", `/api/sessions/${encodeURIComponent(sessionId)}/pause`, { reason }); }
      catch (err) { Bastion.toast(err.message, true); }
    });
  }
  const resumeBtn = panel.querySelector("button.resume");
  if (resumeBtn) {
    resumeBtn.addEventListener("click", async () => {
      try { await api("POST", `/api/sessions/${encodeURIComponent(sessionId)}/resume`); }
      catch (err) { Bastion.toast(err.message, true); }
    });
  }
})();
