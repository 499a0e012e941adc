// Fleet-wide command search; each hit opens the player at that moment.
"use strict";

(() => {
  const form = document.getElementById("search-form");
  const body = document.querySelector("#results tbody");
  const pager = document.getElementById("pager");
  const PAGE = 50;
  let offset = 0;

  const cell = Bastion.cell;

  async function run() {
    const f = new FormData(form);
    const q = new URLSearchParams({ limit: String(PAGE), offset: String(offset) });
    for (const key of ["q", "user", "host_id"]) if (f.get(key)) q.set(key, f.get(key));
    if (f.get("blocked")) q.set("blocked", "1");
    if (f.get("since")) q.set("since", String(Date.parse(f.get("since")) / 1000));
    if (f.get("until")) q.set("until", String(Date.parse(f.get("until")) / 1000 + 86400));
    const csv = new URLSearchParams(q);
    csv.delete("limit"); csv.delete("offset"); csv.set("format", "csv");
    document.getElementById("commands-csv").href = `/api/commands/search?${csv}`;
    let data;
    try { data = await Bastion.api("GET", `/api/commands/search?${q}`); } catch (err) { Bastion.toast(err.message, true); return; }
    body.replaceChildren();
    if (!data.items.length) {
      const tr = document.createElement("tr");
      cell(tr, "No commands match.", "muted").colSpan = 6;
      body.appendChild(tr);
    }
    for (const c of data.items) {
      const tr = document.createElement("tr");
      tr.className = "hit";
      cell(tr, Bastion.fmtTime(c.ts), "nowrap");
      cell(tr, c.username, "strong");
      cell(tr, c.host_name);
      cell(tr, c.text, "command");
      const status = cell(tr, "");
      if (c.blocked || c.flagged) {
        const b = document.createElement("span");
        b.className = "badge " + (c.blocked ? "bad" : "warn");
        b.textContent = c.blocked ? "blocked" : "flagged";
        status.appendChild(b);
      }
      const act = cell(tr, "", "actions");
      const a = document.createElement("a");
      a.className = "button small";
      a.textContent = "Play";
      a.href = `/play/${encodeURIComponent(c.session_id)}?t=${encodeURIComponent(c.offset)}`;
      act.appendChild(a);
      body.appendChild(tr);
    }
    Bastion.pager(pager, offset, PAGE, data.total, (to) => { offset = to; run(); });
  }

  form.addEventListener("submit", (ev) => { ev.preventDefault(); offset = 0; run(); });
  const params = new URLSearchParams(location.search);
  if (params.get("q")) { form.elements.q.value = params.get("q"); run(); }
})();
