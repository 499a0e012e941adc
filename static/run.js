// Run page: aggregated progress, one page of per-host rows at a time, and only new results fetched on each poll
// (`?since=<seq>`), so a 500-host run stays light in the browser and on the wire.
"use strict";

(() => {
  const root = document.getElementById("run");
  const id = root.dataset.runId;
  const PAGE = 50;
  const BADGE = { ok: "good", partial: "warn", failed: "bad", timeout: "bad", cancelled: "warn" };
  const state = { names: [], results: new Map(), seq: 0, page: 0, filter: "all", run: null };
  const $ = (sel) => document.getElementById(sel);

  function outcome(r) {
    if (!r) return "waiting";
    if (r.ok) return "ok";
    return r.cancelled ? "cancelled" : "failed";
  }

  function visibleNames() {
    if (state.filter === "all") return state.names;
    return state.names.filter((n) => outcome(state.results.get(n)) === state.filter);
  }

  function row(name) {
    const r = state.results.get(name);
    const tr = document.createElement("tr");
    tr.dataset.host = name;
    const kind = outcome(r);
    Bastion.cell(tr, name, "strong");
    const badge = document.createElement("span");
    badge.className = "badge " + ({ ok: "good", failed: "bad", cancelled: "warn" }[kind] || "");
    badge.textContent = kind;
    const res = Bastion.cell(tr, "", "result");
    res.appendChild(badge);
    Bastion.cell(tr, r ? (r.rc == null ? "—" : String(r.rc)) : "", "rc");
    Bastion.cell(tr, r ? `${Number(r.elapsed || 0).toFixed(2)} s` : "", "elapsed");
    const out = Bastion.cell(tr, "", "out");
    if (r && r.stdout) { const pre = document.createElement("pre"); pre.textContent = r.stdout; out.appendChild(pre); }
    if (r && r.stderr) { const pre = document.createElement("pre"); pre.className = "err"; pre.textContent = r.stderr; out.appendChild(pre); }
    return tr;
  }

  function renderRows() {
    const names = visibleNames();
    const pages = Math.max(1, Math.ceil(names.length / PAGE));
    state.page = Math.min(state.page, pages - 1);
    const first = state.page * PAGE;
    const shown = names.slice(first, first + PAGE);
    document.querySelector("#hosts tbody").replaceChildren(...shown.map(row));
    $("page-info").textContent = names.length ? `rows ${first + 1}–${first + shown.length} of ${names.length}` : "no hosts";
    $("page-prev").disabled = state.page === 0;
    $("page-next").disabled = state.page >= pages - 1;
  }

  function renderSummary(run) {
    const status = $("status");
    status.textContent = run.status;
    status.className = "badge " + (BADGE[run.status] || "");
    const p = run.progress;
    const pct = (n) => `${p.total ? (100 * n) / p.total : 0}%`;
    $("bar").style.width = pct(p.ok);
    $("bar-failed").style.width = pct(p.failed);
    $("bar-cancelled").style.width = pct(p.cancelled);
    $("count").textContent = `${p.done} / ${p.total} hosts`;
    $("summary").textContent = `ok ${p.ok} · failed ${p.failed} · cancelled ${p.cancelled} · waiting ${p.waiting}`;
    $("duration").textContent = run.duration == null ? "not started" : `· ${run.final ? "took" : "running for"} ${run.duration.toFixed(2)} s`;
    if (run.error) {
      const err = $("run-error");
      err.hidden = false;
      err.textContent = run.error;
    }
    $("cancel-run").hidden = run.final || !root.dataset.mayCancel;
    $("rerun-failed").hidden = !run.final || p.ok === p.total;
  }

  async function poll() {
    try {
      const run = await Bastion.api("GET", `/api/runs/${encodeURIComponent(id)}?since=${state.seq}`);
      if (run.host_names) state.names = run.host_names;
      let changed = !state.run;
      for (const [name, r] of Object.entries(run.results)) {
        state.results.set(name, r);
        state.seq = Math.max(state.seq, r.seq || 0);
        changed = true;
      }
      state.run = run;
      renderSummary(run);
      if (changed) renderRows();
      if (run.final) return;
    } catch (err) { Bastion.toast(err.message, true); }
    setTimeout(poll, 400);
  }

  $("host-filter").addEventListener("change", (ev) => { state.filter = ev.target.value; state.page = 0; renderRows(); });
  $("page-prev").addEventListener("click", () => { state.page -= 1; renderRows(); });
  $("page-next").addEventListener("click", () => { state.page += 1; renderRows(); });
  $("cancel-run").addEventListener("click", async () => {
    $("cancel-run").disabled = true;
    try {
      await Bastion.api("POST", `/api/runs/${encodeURIComponent(id)}/cancel`, {});
      Bastion.toast("Run cancelled");
    } catch (err) { Bastion.toast(err.message, true); $("cancel-run").disabled = false; }
  });
  $("rerun-failed").addEventListener("click", async () => {
    try {
      const made = await Bastion.api("POST", `/api/runs/${encodeURIComponent(id)}/rerun`, {});
      window.location.href = `/runs/${encodeURIComponent(made.run_id)}`;
    } catch (err) { Bastion.toast(err.message, true); }
  });
  poll();
})();
