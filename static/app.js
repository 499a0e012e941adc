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
      if (value === "") continue; // optional fields left empty are omitted
      const type = el.dataset.type;
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
    initLogin();
    initAccount();
  }

  return { api, toast, init, xsrfToken, cell, pager, fmtTime, formMessage };
})();

document.addEventListener("DOMContentLoaded", Bastion.init);
