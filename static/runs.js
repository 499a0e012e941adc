// Run history with filters.
"use strict";

(() => {
  const form = document.getElementById("run-filters");
  const body = document.querySelector("#runs-table tbody");
  const cell = Bastion.cell;
  async function load() {
    const f = new FormData(form);
    const q = new URLSearchParams({ limit: "100" });
    for (const key of ["module_id", "status", "user"]) if (f.get(key)) q.set(key, f.get(key));
    let data;
    try { data = await Bastion.api("GET", `/api/runs?${q}`); } catch (err) { Bastion.toast(err.message, true); return; }
    body.replaceChildren();
    if (!data.items.length) { const tr = document.createElement("tr"); cell(tr, "No runs.", "muted").colSpan = 6; body.appendChild(tr); }
    for (const r of data.items) {
      const tr = document.createElement("tr");
      cell(tr, Bastion.fmtTime(r.created_at), "nowrap");
      cell(tr, `${r.module_id} ${r.module_name}`, "strong");
      cell(tr, r.username);
      // a fleet run lists hundreds of hosts: name a few, count the rest
      const names = r.host_names.slice(0, 5).join(", ");
      cell(tr, r.host_names.length > 5 ? `${names} and ${r.host_names.length - 5} more` : names);
      const st = cell(tr, "");
      const b = document.createElement("span");
      b.className = "badge " + ({ ok: "good", partial: "warn", failed: "bad", timeout: "bad", cancelled: "warn" }[r.status] || "");
      b.textContent = r.status;
      st.appendChild(b);
      const act = cell(tr, "", "actions");
      const a = document.createElement("a");
      a.className = "button small"; a.textContent = "Open"; a.href = `/runs/${encodeURIComponent(r.id)}`;
      act.appendChild(a);
      body.appendChild(tr);
    }
  }
  form.addEventListener("submit", (ev) => { ev.preventDefault(); load(); });
  load();
})();
