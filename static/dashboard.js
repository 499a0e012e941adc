// Dashboard: counts, live sessions (with Watch and End) and recent kicks and failed logins, refreshed every 5 s.
"use strict";

(() => {
  const cell = Bastion.cell;
  const liveBody = document.querySelector("#dash-live tbody");
  const DAY = 86400;

  function button(td, text, cls) {
    const b = document.createElement("button");
    b.type = "button"; b.className = "small " + (cls || ""); b.textContent = text;
    td.appendChild(b);
    return b;
  }
  function placeholder(body, cols, text) {
    const tr = document.createElement("tr");
    cell(tr, text, "muted").colSpan = cols;
    body.replaceChildren(tr);
  }
  function setCount(id, n, one, many) {
    const el = document.getElementById(id);
    el.querySelector(".num").textContent = String(n);
    el.querySelector(".label").textContent = n === 1 ? one : many;
  }

  let liveKey = null; // the live sessions drawn: rows are redrawn only when the set changes (an End stays put)
  function drawLive(data) {
    setCount("stat-live", data.total, "live session", "live sessions");
    const more = document.getElementById("dash-live-more"); // the list shows 100: the rest are on Sessions
    more.hidden = data.total <= data.items.length;
    more.textContent = `${data.items.length} of ${data.total} shown: all on Sessions`;
    const key = data.items.map((s) => s.id).join(",");
    if (key === liveKey) {
      for (const s of data.items) {
        const tr = liveBody.querySelector(`tr[data-session-id="${CSS.escape(s.id)}"]`);
        if (tr) tr.querySelector(".watchers").textContent = s.watchers == null ? "—" : String(s.watchers);
      }
      return;
    }
    liveKey = key;
    if (!data.items.length) { placeholder(liveBody, 6, "No live sessions."); return; }
    liveBody.replaceChildren();
    for (const s of data.items) {
      const tr = document.createElement("tr");
      tr.dataset.sessionId = s.id;
      cell(tr, s.username, "strong");
      cell(tr, s.host_name, "host");
      cell(tr, s.node, "mono small");
      cell(tr, Bastion.fmtTime(s.started_at), "nowrap");
      cell(tr, s.watchers == null ? "—" : String(s.watchers), "watchers");
      const actions = cell(tr, "", "actions");
      const watch = document.createElement("a");
      watch.className = "button small"; watch.textContent = "Watch"; watch.href = `/watch/${encodeURIComponent(s.id)}`;
      actions.append(watch, " ");
      button(actions, "End", "danger").addEventListener("click", async () => {
        if (await Bastion.endSession(s.id, s.username)) refresh();
      });
      liveBody.appendChild(tr);
    }
  }

  function drawEvents(body, items, cols, row) {
    if (!items.length) { placeholder(body, cols, "None."); return; }
    body.replaceChildren();
    for (const e of items) {
      const tr = document.createElement("tr");
      row(tr, e);
      body.appendChild(tr);
    }
  }

  let busy = false;
  async function refresh() {
    if (busy || document.hidden) return;
    busy = true;
    try {
      const since = Math.floor(Date.now() / 1000 - DAY);
      const [live, today, kicks, failed] = await Promise.all([
        Bastion.api("GET", "/api/sessions?live=1&limit=100"),
        Bastion.api("GET", `/api/sessions?since=${since}&limit=1`),
        Bastion.api("GET", "/api/events?action=session.kicked&limit=10"),
        Bastion.api("GET", "/api/events?action=login.failed&limit=10"),
      ]);
      drawLive(live);
      setCount("stat-today", today.total, "session in the last 24 h", "sessions in the last 24 h");
      setCount("stat-kicks", kicks.total, "session ended by the security team", "sessions ended by the security team");
      setCount("stat-failed", failed.total, "failed login", "failed logins");
      drawEvents(document.querySelector("#dash-kicks tbody"), kicks.items, 4, (tr, e) => {
        cell(tr, Bastion.fmtTime(e.ts), "nowrap"); cell(tr, e.actor); cell(tr, e.target); cell(tr, (e.detail || {}).note || "");
      });
      drawEvents(document.querySelector("#dash-failed tbody"), failed.items, 3, (tr, e) => {
        tr.className = "failed";
        cell(tr, Bastion.fmtTime(e.ts), "nowrap"); cell(tr, e.actor); cell(tr, e.address, "mono small");
      });
      document.getElementById("dash-updated").textContent = `updated ${Bastion.fmtTime(Date.now() / 1000).slice(11)}`;
    } catch (err) {
      document.getElementById("dash-updated").textContent = `not updated: ${err.message}`;
    } finally {
      busy = false;
    }
  }
  // Charts (Chart.js, vendored from npm): drawn once, then their data is replaced every minute.
  const charts = {};
  const ACCENT = "#2456d6", DANGER = "#c0392b";
  function chart(id, type, labels, data, color, horizontal) {
    if (charts[id]) {
      charts[id].data.labels = labels;
      charts[id].data.datasets[0].data = data;
      charts[id].update();
      return;
    }
    charts[id] = new Chart(document.getElementById(id), {
      type,
      data: { labels, datasets: [{ data, backgroundColor: color, borderColor: color, fill: false, tension: 0.2 }] },
      options: {
        indexAxis: horizontal ? "y" : "x", animation: false, maintainAspectRatio: false,
        plugins: { legend: { display: false } },
        scales: { [horizontal ? "x" : "y"]: { beginAtZero: true, ticks: { precision: 0 } } },
      },
    });
  }
  async function drawCharts() {
    if (document.hidden) return;
    let s;
    try { s = await Bastion.api("GET", "/api/stats?days=14"); } catch (err) { return; }
    const days = s.days.map((d) => d.slice(5)); // MM-DD
    chart("chart-sessions", "bar", days, s.sessions, ACCENT);
    chart("chart-blocked", "bar", days, s.blocked, DANGER);
    chart("chart-users", "bar", s.top_users.map((u) => u.name), s.top_users.map((u) => u.sessions), ACCENT, true);
    chart("chart-hosts", "bar", s.top_hosts.map((h) => h.name), s.top_hosts.map((h) => h.sessions), ACCENT, true);
    document.getElementById("charts").dataset.drawn = "1";
    if (s.partial) document.getElementById("charts-note").textContent = "(UTC days; the newest 20,000 records only)";
  }

  refresh();
  setInterval(refresh, 5000);
  drawCharts();
  setInterval(drawCharts, 60000);
})();
