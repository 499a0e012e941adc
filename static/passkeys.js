// Passkeys (WebAuthn): enrol and remove on the Account page; on the login page, a passkey as the second step
// after the password, or on its own (passwordless). Binary fields travel as base64url, as py_webauthn expects.
"use strict";
(() => {
  const b64url = {
    toBytes(text) {
      const pad = "=".repeat((4 - (text.length % 4)) % 4);
      const raw = atob(text.replace(/-/g, "+").replace(/_/g, "/") + pad);
      return Uint8Array.from(raw, (c) => c.charCodeAt(0)).buffer;
    },
    fromBytes(buffer) {
      let raw = "";
      for (const b of new Uint8Array(buffer)) raw += String.fromCharCode(b);
      return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
    },
  };

  function creationOptions(o) {
    return { ...o, challenge: b64url.toBytes(o.challenge), user: { ...o.user, id: b64url.toBytes(o.user.id) },
      excludeCredentials: (o.excludeCredentials || []).map((c) => ({ ...c, id: b64url.toBytes(c.id) })) };
  }

  function requestOptions(o) {
    return { ...o, challenge: b64url.toBytes(o.challenge),
      allowCredentials: (o.allowCredentials || []).map((c) => ({ ...c, id: b64url.toBytes(c.id) })) };
  }

  function registrationJSON(cred) {
    const r = cred.response;
    return { id: cred.id, rawId: b64url.fromBytes(cred.rawId), type: cred.type,
      response: { clientDataJSON: b64url.fromBytes(r.clientDataJSON), attestationObject: b64url.fromBytes(r.attestationObject),
        transports: r.getTransports ? r.getTransports() : [] } };
  }

  function assertionJSON(cred) {
    const r = cred.response;
    return { id: cred.id, rawId: b64url.fromBytes(cred.rawId), type: cred.type,
      response: { clientDataJSON: b64url.fromBytes(r.clientDataJSON), authenticatorData: b64url.fromBytes(r.authenticatorData),
        signature: b64url.fromBytes(r.signature), userHandle: r.userHandle ? b64url.fromBytes(r.userHandle) : null } };
  }

  async function enrol(form) {
    const errorEl = form.querySelector(".form-error");
    errorEl.textContent = "";
    try {
      const { challenge_id, options } = await Bastion.api("POST", "/api/me/passkeys/options");
      const cred = await navigator.credentials.create({ publicKey: creationOptions(options) });
      const name = form.elements.name.value.trim() || "passkey";
      await Bastion.api("POST", "/api/me/passkeys", { challenge_id, name, credential: registrationJSON(cred) });
      window.location.reload();
    } catch (err) {
      errorEl.textContent = err.name === "NotAllowedError" ? "The passkey was not created (cancelled or timed out)." : err.message;
    }
  }

  async function signIn(errorEl, next) {
    errorEl.textContent = "";
    try {
      const { challenge_id, options } = await Bastion.api("POST", "/api/login/passkey/options", {});
      const cred = await navigator.credentials.get({ publicKey: requestOptions(options) });
      await Bastion.api("POST", "/api/login/passkey", { challenge_id, credential: assertionJSON(cred) });
      window.location.assign(next || "/");
    } catch (err) {
      errorEl.textContent = err.name === "NotAllowedError" ? "No passkey was used (cancelled or timed out)." : err.message;
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const form = document.getElementById("passkey-enrol");
    if (form) form.addEventListener("submit", (ev) => { ev.preventDefault(); enrol(form); });
    for (const button of document.querySelectorAll("[data-passkey-remove]")) {
      button.addEventListener("click", async () => {
        try {
          await Bastion.api("DELETE", `/api/me/passkeys/${encodeURIComponent(button.dataset.passkeyRemove)}`);
          window.location.reload();
        } catch (err) { Bastion.toast(err.message, true); }
      });
    }
    const login = document.getElementById("login-form");
    for (const id of ["passkey-2fa", "passkey-login"]) {
      const button = document.getElementById(id);
      if (button && login) button.addEventListener("click", () => signIn(login.querySelector(".form-error"), login.dataset.next));
    }
  });
})();
