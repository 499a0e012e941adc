// After a single sign-on: go on from our own origin (the login cookie is SameSite=Strict).
"use strict";
(() => {
  const el = document.getElementById("sso-continue");
  if (el && el.dataset.next && el.dataset.next.startsWith("/") && !el.dataset.next.startsWith("//")) {
    window.location.replace(el.dataset.next);
  }
})();
