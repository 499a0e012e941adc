// Sessions page: live list refreshed every 2 s, ended list with filters and paging; Watch / End buttons.
"use strict";

(() => {
  const liveBody = document.querySelector("#live-table tbody");
  const endedBody = document.querySelector("#ended-table tbody");
  const pager = document.getElementById("ended-pager");
  const filters = document.getElementById("filters");
  const PAGE = 25;
  // How an end reason looks: a normal end is good, a forced or broken one is bad, anything else a warning.
  const REASON_BADGE = {
    exit: "good", closed: "good",
    kicked: "bad", failed: "bad", record_failed: "bad",
    host_lost: "warn", idle: "warn", shutdown: "warn", interrupted: "warn",
  };
  let offset = 0;

  const fmtTime = Bastion.fmtTime;
  function fmtDuration(s) {
    s = Math.max(0, Math.round(s));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    return h ? `${h}h ${m}m` : m ? `${m}m ${sec}s` : `${sec}s`;
  }
  function fmtBytes(n) {
    if (n < 1024) return `${n} B`;
    if (n < 1048576) return `${(n / 1024).toFixed(1)} KiB`;
    return `${(n / 1048576).toFixed(1)} MiB`;
  }
  const cell = Bastion.cell;
  function link(td, text, href, cls) {
    const a = document.createElement("a");
    a.className = "button small " + (cls || "");
    a.href = href;
    a.textContent = text;
    td.appendChild(a);
    td.appendChild(document.createTextNode(" "));
    return a;
  }
  function empty(body, cols, text) {
    body.replaceChildren();
    const tr = document.createElement("tr");
    const td = cell(tr, text, "muted");
    td.colSpan = cols;
    body.appendChild(tr);
  }

  async function kill(id, user) {
    if (!await Bastion.endSession(id, user)) return;
    refreshLive();
    loadEnded();
  }

  async function refreshLive() {
    let data;
    try { data = await Bastion.api("GET", "/api/sessions?live=1&limit=200"); } catch (err) { return; }
    document.getElementById("live-count").textContent =
      data.total > data.items.length ? `${data.total} live (the ${data.items.length} newest shown)` : `${data.total} live`;
    document.getElementById("updated").textContent = `updated ${Bastion.fmtTime(Date.now() / 1000).slice(11)}`;
    if (!data.items.length) { empty(liveBody, 8, "No live sessions."); return; }
    // Rows are kept and updated in place, so an End button does not move or vanish under a click.
    const now = Date.now() / 1000;
    const keep = new Set(data.items.map((s) => s.id));
    for (const tr of [...liveBody.children]) if (!keep.has(tr.dataset.sessionId)) tr.remove();
    data.items.forEach((s, index) => {
      let tr = liveBody.querySelector(`tr[data-session-id="${CSS.escape(s.id)}"]`);
      if (!tr) {
        tr = document.createElement("tr");
        tr.dataset.sessionId = s.id;
        cell(tr, s.username, "strong");
        viaBadge(cell(tr, s.host_name, "host"), s.via);
        cell(tr, fmtTime(s.started_at), "nowrap");
        cell(tr, "", "duration");
        cell(tr, "", "bytes");
        cell(tr, "", "watchers");
        cell(tr, s.node, "mono small");
        const actions = cell(tr, "", "actions");
        link(actions, "Watch", `/watch/${encodeURIComponent(s.id)}`);
        const end = document.createElement("button");
        end.type = "button";
        end.className = "small danger";
        end.textContent = "End";
        end.addEventListener("click", () => kill(s.id, s.username));
        actions.appendChild(end);
      }
      tr.querySelector(".duration").textContent = fmtDuration(now - s.started_at);
      tr.querySelector(".bytes").textContent = fmtBytes(s.bytes_out);
      tr.querySelector(".watchers").textContent = s.watchers == null ? "—" : String(s.watchers);
      if (liveBody.children[index] !== tr) liveBody.insertBefore(tr, liveBody.children[index] || null);
    });
  }

  // SSH gateway sessions say how they came in (ssh shell, exec command, sftp); browser sessions carry nothing.
  function viaBadge(td, via) {
    if (!via) return;
    const badge = document.createElement("span");
    badge.className = "badge via";
    badge.textContent = via;
    td.append(" ", badge);
  }

  function filterQuery() {
    const q = new URLSearchParams({ live: "0", limit: String(PAGE), offset: String(offset) });
    const f = new FormData(filters);
    for (const key of ["user", "host_id", "reason"]) if (f.get(key)) q.set(key, f.get(key));
    if (f.get("since")) q.set("since", String(Date.parse(f.get("since")) / 1000));
    if (f.get("until")) q.set("until", String(Date.parse(f.get("until")) / 1000 + 86400));
    return q.toString();
  }

  async function loadEnded() {
    const csv = new URLSearchParams(filterQuery());
    csv.delete("limit"); csv.delete("offset"); csv.set("format", "csv");
    document.getElementById("sessions-csv").href = `/api/sessions?${csv}`;
    let data;
    try { data = await Bastion.api("GET", `/api/sessions?${filterQuery()}`); } catch (err) { Bastion.toast(err.message, true); return; }
    if (!data.items.length) empty(endedBody, 9, "No ended sessions match.");
    else {
      endedBody.replaceChildren();
      for (const s of data.items) {
        const tr = document.createElement("tr");
        tr.dataset.sessionId = s.id;
        cell(tr, s.username, "strong");
        viaBadge(cell(tr, s.host_name, "host"), s.via);
        cell(tr, fmtTime(s.started_at), "nowrap");
        cell(tr, fmtDuration((s.ended_at || s.started_at) - s.started_at));
        cell(tr, fmtBytes(s.bytes_out));
        const reason = cell(tr, "");
        const badge = document.createElement("span");
        badge.className = "badge " + (REASON_BADGE[s.end_reason] || "warn");
        badge.textContent = s.end_reason;
        reason.appendChild(badge);
        if (s.reason) reason.appendChild(document.createTextNode(" " + s.reason));
        cell(tr, s.ended_by || "—", "ended-by");
        cell(tr, s.node, "mono small");
        const actions = cell(tr, "", "actions");
        link(actions, "Play", `/play/${encodeURIComponent(s.id)}`);
        link(actions, "Commands", `/play/${encodeURIComponent(s.id)}#commands`);
        link(actions, ".cast", `/api/sessions/${encodeURIComponent(s.id)}/recording`);
        endedBody.appendChild(tr);
      }
    }
    Bastion.pager(pager, offset, PAGE, data.total, (to) => { offset = to; loadEnded(); }, { hideSinglePage: true });
  }

  filters.addEventListener("submit", (ev) => { ev.preventDefault(); offset = 0; loadEnded(); });
  let liveIds = null; // null: the ended list has not been loaded yet (also when nothing is live)
  async function tick() {
    await refreshLive();
    const ids = [...liveBody.querySelectorAll("tr[data-session-id]")].map((tr) => tr.dataset.sessionId).join(",");
    if (ids !== liveIds) { liveIds = ids; loadEnded(); } // a session ended or started: refresh the ended list too
  }
  tick();
  setInterval(tick, 2000);
})();
