// Run page: progress bar and per-host rows that fill in as results arrive.
"use strict";

(() => {
  const root = document.getElementById("run");
  const id = root.dataset.runId;
  const FINAL = ["ok", "partial", "failed", "timeout"];

  function render(run) {
    const status = document.getElementById("status");
    status.textContent = run.status;
    status.className = "badge " + ({ ok: "good", partial: "warn", failed: "bad", timeout: "bad" }[run.status] || "");
    const total = run.host_names.length;
    const done = Object.keys(run.results).filter((h) => run.host_names.includes(h)).length;
    document.getElementById("bar").style.width = `${total ? (100 * done) / total : 0}%`;
    document.getElementById("count").textContent = `${done} / ${total} hosts`;
    if (run.error) {
      const err = document.getElementById("run-error");
      err.hidden = false;
      err.textContent = run.error;
    }
    for (const tr of document.querySelectorAll("#hosts tr[data-host]")) {
      const r = run.results[tr.dataset.host];
      if (!r || tr.dataset.filled) continue;
      if (FINAL.includes(run.status)) tr.dataset.filled = "1";
      const badge = document.createElement("span");
      badge.className = "badge " + (r.ok ? "good" : "bad");
      badge.textContent = r.ok ? "ok" : "failed";
      tr.querySelector(".result").replaceChildren(badge);
      tr.querySelector(".rc").textContent = r.rc == null ? "—" : String(r.rc);
      tr.querySelector(".elapsed").textContent = `${Number(r.elapsed || 0).toFixed(2)} s`;
      const out = tr.querySelector(".out");
      out.replaceChildren();
      if (r.stdout) { const pre = document.createElement("pre"); pre.textContent = r.stdout; out.appendChild(pre); }
      if (r.stderr) { const pre = document.createElement("pre"); pre.className = "err"; pre.textContent = r.stderr; out.appendChild(pre); }
    }
    return FINAL.includes(run.status);
  }

  async function poll() {
    try {
      const run = await Bastion.api("GET", `/api/runs/${encodeURIComponent(id)}`);
      if (render(run)) return;
    } catch (err) { Bastion.toast(err.message, true); }
    setTimeout(poll, 400);
  }
  poll();
})();
