// Bastion pages: JSON API calls with the XSRF header, generic forms and action buttons.
// Everything user-supplied is inserted with textContent, never innerHTML.
"use strict";

const Bastion = (() => {
  function xsrfToken() {
    const m = document.cookie.match(/(?:^|;\s*)_xsrf=([^;]+)/);
    return m ? decodeURIComponent(m[1]) : "";
  }

  async function api(method, url, body) {
    const opts = { method, headers: { "X-XSRFToken": xsrfToken(), "Accept": "application/json" }, credentials: "same-origin" };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    const res = await fetch(url, opts);
    let data = {};
    try { data = await res.json(); } catch (e) { data = {}; }
    if (!res.ok) {
      const err = new Error(data.error || `${res.status} ${res.statusText}`);
      err.status = res.status;
      throw err;
    }
    return data;
  }

  // One date format on every page, the one the server renders (YYYY-MM-DD HH:MM:SS, local time); "—" for none.
  function fmtTime(t) {
    if (!t) return "—";
    const d = new Date(t * 1000);
    const p = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  }

  // An API error in the words of the form that caused it: the field name it starts with ("private_key",
  // "app_id") becomes the text of that field's label ("private key", "Category"); "sys_param_1 (Lines)" becomes "Lines".
  function formMessage(form, message) {
    message = message.replace(/\bsys_param_\d+ \(([^)]*)\)/g, "$1");
    for (const el of form.querySelectorAll("[name]")) {
      const label = el.closest("label");
      const words = label && label.firstChild && label.firstChild.nodeType === Node.TEXT_NODE
        ? label.firstChild.textContent.trim().replace(/^or /, "") : "";
      if (!words || words === el.name) continue;
      // messages start with the field they are about ("app_id is required"); only that word is replaced
      if (message.startsWith(el.name) && !/\w/.test(message.charAt(el.name.length))) {
        message = words + message.slice(el.name.length);
        break;
      }
    }
    return message.charAt(0).toUpperCase() + message.slice(1);
  }

  // A table cell holding text (never HTML).
  function cell(tr, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }

  // "← Newer · a–b of n · Older →" for offset paging; go(newOffset) loads that page.
  function pager(nav, offset, size, total, go, { hideSinglePage = false } = {}) {
    nav.replaceChildren();
    if (!total || (hideSinglePage && total <= size)) return;
    const button = (label, to) => {
      const b = document.createElement("button");
      b.type = "button"; b.className = "small"; b.textContent = label;
      b.addEventListener("click", () => go(to));
      nav.appendChild(b);
    };
    if (offset > 0) button("← Newer", Math.max(0, offset - size));
    const span = document.createElement("span");
    span.textContent = `${offset + 1}–${Math.min(offset + size, total)} of ${total}`;
    nav.appendChild(span);
    if (offset + size < total) button("Older →", offset + size);
  }

  function toast(message, isError) {
    const el = document.createElement("div");
    el.className = "toast" + (isError ? " error" : "");
    el.textContent = message;
    document.body.appendChild(el);
    setTimeout(() => el.remove(), 4000);
  }

  function formBody(form) {
    const body = {};
    for (const el of form.elements) {
      if (!el.name || el.disabled) continue;
      if (el.type === "checkbox") {
        if (el.name === "roles") {
          body.roles = body.roles || [];
          if (el.checked) body.roles.push(el.value);
        } else {
          body[el.name] = el.checked;
        }
        continue;
      }
      const value = el.value;
      const type = el.dataset.type;
      if (value === "") { // optional fields left empty are omitted, or sent empty where emptying them is a change
        if (el.dataset.empty === "send") body[el.name] = type === "list" ? [] : "";
        continue;
      }
      if (type === "int") body[el.name] = Number.parseInt(value, 10);
      else if (type === "list") body[el.name] = value.split(",").map((s) => s.trim()).filter(Boolean);
      else body[el.name] = value;
    }
    return body;
  }

  function bindForms(root) {
    for (const form of root.querySelectorAll("form[data-api]")) {
      form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        const errorEl = form.querySelector(".form-error");
        if (errorEl) errorEl.textContent = "";
        const button = form.querySelector("button[type=submit]");
        if (button) button.disabled = true;
        try {
          const data = await api(form.dataset.method || "POST", form.dataset.api, formBody(form));
          if (form.dataset.show) {
            const out = form.parentElement.querySelector(".secret-once");
            out.hidden = false;
            out.textContent = `Copy this now; it will not be shown again: ${data[form.dataset.show]}`;
            form.reset();
            if (form.dataset.list) await refreshTokens(document.getElementById(form.dataset.list));
          } else if (form.dataset.redirect) {
            window.location.assign(form.dataset.redirect);
          } else {
            window.location.reload();
          }
        } catch (err) {
          if (errorEl) errorEl.textContent = formMessage(form, err.message); else toast(formMessage(form, err.message), true);
        } finally {
          if (button) button.disabled = false;
        }
      });
    }
    bindButtons(root);
  }

  // The account page's token list, redrawn after a token is created (the page keeps the new secret on show).
  async function refreshTokens(body) {
    const data = await api("GET", "/api/tokens");
    body.replaceChildren();
    for (const t of data.items) {
      const tr = document.createElement("tr");
      tr.dataset.tokenId = t.id;
      cell(tr, t.name);
      cell(tr, t.id, "mono");
      cell(tr, (t.scopes || []).join(", "));
      cell(tr, fmtTime(t.created_at));
      cell(tr, fmtTime(t.expires_at));
      cell(tr, t.last_used_at ? fmtTime(t.last_used_at) : "never", "token-last-used");
      const btn = document.createElement("button");
      btn.type = "button";
      btn.className = "danger small";
      btn.textContent = "Revoke";
      btn.dataset.api = `/api/tokens/${encodeURIComponent(t.id)}`;
      btn.dataset.method = "DELETE";
      btn.dataset.confirm = "Revoke this token?";
      cell(tr, "", "actions").appendChild(btn);
      body.appendChild(tr);
    }
    bindButtons(body);
  }

  function bindButtons(root) {
    for (const btn of root.querySelectorAll("button[data-api]")) {
      btn.addEventListener("click", async () => {
        if (btn.dataset.confirm && !window.confirm(btn.dataset.confirm)) return;
        btn.disabled = true;
        try {
          const body = btn.dataset.body ? JSON.parse(btn.dataset.body) : undefined;
          await api(btn.dataset.method || "POST", btn.dataset.api, body);
          window.location.reload();
        } catch (err) {
          toast(err.message, true);
          btn.disabled = false;
        }
      });
    }
  }

  function initLogin() {
    const form = document.getElementById("login-form");
    if (!form) return;
    const pwStep = document.getElementById("password-step");
    const totpStep = document.getElementById("totp-step");
    const errorEl = form.querySelector(".form-error");
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      errorEl.textContent = "";
      try {
        if (!totpStep.hidden) {
          await api("POST", "/api/login/totp", { code: form.elements.code.value });
        } else {
          const body = { username: form.elements.username.value, password: form.elements.password.value };
          // a directory (LDAP) account chosen on the login page signs in through /api/login/directory
          const via = form.elements.via ? form.elements.via.value : "";
          if (via) body.directory = via;
          const data = await api("POST", via ? "/api/login/directory" : "/api/login", body);
          if (data.totp_required) {
            pwStep.hidden = true;
            totpStep.hidden = false;
            form.elements.code.focus();
            return;
          }
        }
        window.location.assign(form.dataset.next || "/");
      } catch (err) {
        errorEl.textContent = err.message;
        if (err.status === 401 && !totpStep.hidden && /password first/.test(err.message)) {
          totpStep.hidden = true; pwStep.hidden = false;
        }
      }
    });
  }

  function initAccount() {
    const begin = document.getElementById("totp-begin");
    if (!begin) return;
    begin.addEventListener("click", async () => {
      try {
        const data = await api("POST", "/api/me/totp");
        document.getElementById("totp-qr").src = data.qr;
        document.getElementById("totp-uri").textContent = data.uri;
        document.getElementById("totp-enrol").hidden = false;
        begin.hidden = true;
      } catch (err) { toast(err.message, true); }
    });
  }

  // Edit dialogs: a button[data-edit] names a <dialog>; its form gets the button's API URL and values, then opens.
  function bindEditors(root) {
    for (const btn of root.querySelectorAll("button[data-edit]")) {
      btn.addEventListener("click", () => {
        const dialog = document.getElementById(btn.dataset.edit);
        const form = dialog.querySelector("form");
        form.reset();
        form.dataset.api = btn.dataset.editUrl;
        const values = JSON.parse(btn.dataset.values || "{}");
        for (const el of form.elements) {
          if (!el.name || !(el.name in values)) continue;
          const v = values[el.name];
          if (el.type === "checkbox") el.checked = Array.isArray(v) ? v.includes(el.value) : Boolean(v);
          else el.value = Array.isArray(v) ? v.join(", ") : (v === null || v === undefined ? "" : String(v));
        }
        const title = dialog.querySelector(".dialog-title");
        if (title) title.textContent = btn.dataset.title || "";
        const errorEl = form.querySelector(".form-error");
        if (errorEl) errorEl.textContent = "";
        dialog.showModal();
      });
    }
    for (const b of root.querySelectorAll("dialog [data-close]")) {
      b.addEventListener("click", () => b.closest("dialog").close());
    }
  }

  // A search box over a list: input[data-filter-rows=<selector>] hides the matching rows whose data-search text
  // lacks every typed word; a [data-filter-group] holding no shown row is hidden too; [data-filter-count] says how
  // many are shown.
  function bindRowFilters(root) {
    for (const input of root.querySelectorAll("input[data-filter-rows]")) {
      const rows = [...document.querySelectorAll(input.dataset.filterRows)];
      const count = input.dataset.filterCount ? document.getElementById(input.dataset.filterCount) : null;
      const apply = () => {
        const words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
        let shown = 0;
        for (const row of rows) {
          const text = (row.dataset.search || row.textContent).toLowerCase();
          row.hidden = !words.every((w) => text.includes(w));
          if (!row.hidden) shown += 1;
        }
        for (const group of document.querySelectorAll("[data-filter-group]")) {
          const members = group.querySelectorAll(input.dataset.filterRows);
          group.hidden = members.length > 0 && [...members].every((r) => r.hidden);
        }
        if (count) count.textContent = words.length ? `${shown} of ${rows.length} shown` : "";
      };
      input.addEventListener("input", apply);
      if (input.value) apply();
    }
  }

  // A searchable picker: input[data-filter-options=<select id>] hides the select's options that do not match and
  // picks the first match, so a long host list is found by typing.
  function bindOptionFilters(root) {
    for (const input of root.querySelectorAll("input[data-filter-options]")) {
      const select = document.getElementById(input.dataset.filterOptions);
      input.addEventListener("input", () => {
        const q = input.value.trim().toLowerCase();
        let first = null;
        for (const opt of select.options) {
          if (!opt.value) continue; // the "—"/"any" choice stays
          opt.hidden = Boolean(q) && !opt.textContent.toLowerCase().includes(q);
          if (!opt.hidden && !first) first = opt;
        }
        if (q && first) select.value = first.value;
        else if (q) select.value = "";
        select.dispatchEvent(new Event("change"));
      });
    }
  }

  // Inventory: "Test" connects to a host with its credential and says what it found.
  function bindHostTests(root) {
    const out = document.getElementById("host-test-result");
    for (const btn of root.querySelectorAll("button[data-test-host]")) {
      btn.addEventListener("click", async () => {
        btn.disabled = true;
        out.hidden = false;
        out.className = "test-result";
        out.textContent = `Testing ${btn.dataset.name}…`;
        try {
          const r = await api("POST", btn.dataset.testHost);
          out.className = "test-result " + (r.ok ? "good" : "bad");
          out.textContent = r.message + (r.key === "changed" ? ` (pinned: ${r.pinned_fingerprint})` : "");
          const keyCell = btn.closest("tr").querySelector(".host-key");
          if (keyCell && r.key === "first_use") keyCell.textContent = r.fingerprint;
        } catch (err) {
          out.className = "test-result bad";
          out.textContent = err.message;
        } finally {
          btn.disabled = false;
        }
      });
    }
  }

  // End a live session (auditor, admin): asks for the reason the user is shown; true when it ended.
  async function endSession(id, username) {
    const reason = window.prompt(`Reason for ending ${username}'s session (shown to the user):`, "ended by security team");
    if (!reason) return false;
    try {
      await api("POST", `/api/sessions/${encodeURIComponent(id)}/kill`, { reason });
      toast(`${username}'s session ended`);
      return true;
    } catch (err) { toast(err.message, true); return false; }
  }

  function initNav() {
    // Narrow screens: the navigation and account links fold behind a Menu button (static/app.css).
    const toggle = document.getElementById("nav-toggle");
    if (!toggle) return;
    toggle.addEventListener("click", () => {
      const open = toggle.closest(".topbar").classList.toggle("open");
      toggle.setAttribute("aria-expanded", String(open));
    });
  }

  function init() {
    initNav();
    // dates the server rendered: in the reader's time zone, like the dates the scripts draw
    for (const el of document.querySelectorAll("time[data-ts]")) {
      const t = Number(el.dataset.ts);
      if (!t) continue;
      el.textContent = fmtTime(t);
      el.dateTime = new Date(t * 1000).toISOString();
    }
    const logout = document.getElementById("logout");
    if (logout) {
      logout.addEventListener("click", async () => {
        try { await api("POST", "/api/logout"); } finally { window.location.assign("/login"); }
      });
    }
    bindForms(document);
    bindEditors(document);
    bindRowFilters(document);
    bindOptionFilters(document);
    bindHostTests(document);
    initLogin();
    initAccount();
  }

  return { api, toast, init, xsrfToken, cell, pager, fmtTime, formMessage, endSession };
})();

document.addEventListener("DOMContentLoaded", Bastion.init);
