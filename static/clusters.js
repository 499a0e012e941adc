// Clusters admin page: add and edit a cluster (the token is write-only: empty keeps the current one), test the
// connection and say what happened in words, warn while "skip TLS verification" is ticked. Pod grants, deletes and
// revokes use the generic forms and buttons of static/app.js. Text from the server goes in with textContent only.
"use strict";

(() => {
  const form = document.getElementById("cluster-form");
  if (!form) return;
  const title = document.getElementById("cluster-form-title");
  const submit = document.getElementById("cluster-submit");
  const cancel = document.getElementById("cluster-cancel");
  const insecure = document.getElementById("cluster-insecure");
  const warning = document.getElementById("insecure-warning");
  const tokenHint = document.getElementById("token-hint");
  const errorEl = form.querySelector(".form-error");
  let editing = null; // the id of the cluster being edited, or null when adding

  function showWarning() { warning.hidden = !insecure.checked; }
  insecure.addEventListener("change", showWarning);

  function addMode() {
    editing = null;
    form.reset();
    title.textContent = "Add a cluster";
    submit.textContent = "Add cluster";
    cancel.hidden = true;
    form.elements.token.placeholder = "eyJhbGciOi…";
    tokenHint.textContent = "The token is encrypted at rest and never shown again.";
    errorEl.textContent = "";
    showWarning();
  }

  async function editMode(id) {
    errorEl.textContent = "";
    let cluster;
    try {
      cluster = await Bastion.api("GET", `/api/clusters/${encodeURIComponent(id)}`);
    } catch (err) {
      Bastion.toast(err.message, true);
      return;
    }
    editing = cluster.id;
    form.elements.name.value = cluster.name;
    form.elements.api_url.value = cluster.api_url;
    form.elements.app_id.value = cluster.app_id || "";
    form.elements.ca_bundle.value = cluster.ca_bundle || "";
    form.elements.token.value = "";
    form.elements.token.placeholder = "leave empty to keep the current token";
    insecure.checked = Boolean(cluster.insecure);
    title.textContent = `Edit cluster ${cluster.name}`;
    submit.textContent = "Save changes";
    cancel.hidden = false;
    tokenHint.textContent = "The current token is kept unless you give a new one; it is never shown.";
    showWarning();
    document.getElementById("cluster-editor").scrollIntoView({ block: "start" });
    form.elements.name.focus();
  }

  cancel.addEventListener("click", addMode);

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    errorEl.textContent = "";
    const f = form.elements;
    const body = {
      name: f.name.value.trim(),
      api_url: f.api_url.value.trim(),
      app_id: f.app_id.value,
      ca_bundle: f.ca_bundle.value,
      insecure: insecure.checked,
    };
    // write-only: sent only when given (editing: empty keeps the current token; adding: the server asks for one)
    if (f.token.value) body.token = f.token.value;
    submit.disabled = true;
    try {
      if (editing === null) await Bastion.api("POST", "/api/clusters", body);
      else await Bastion.api("PATCH", `/api/clusters/${encodeURIComponent(editing)}`, body);
      window.location.reload();
    } catch (err) {
      errorEl.textContent = Bastion.formMessage(form, err.message);
    } finally {
      submit.disabled = false;
    }
  });

  for (const btn of document.querySelectorAll("button[data-edit-cluster]")) {
    btn.addEventListener("click", () => editMode(btn.dataset.editCluster));
  }

  // "Test connection": did Bastion reach the API server, and may the token list pods? One line per check.
  function showResult(box, result) {
    box.replaceChildren();
    const head = document.createElement("p");
    head.className = result.ok ? "ok-text" : "error-text";
    head.textContent = result.ok ? "The connection works." : "The connection does not work yet.";
    box.appendChild(head);
    const list = document.createElement("ul");
    list.className = "checks";
    for (const check of result.checks || []) {
      const li = document.createElement("li");
      li.className = check.ok ? "good" : "bad";
      const mark = document.createElement("span");
      mark.className = "mark";
      mark.textContent = check.ok ? "✓" : "✗";
      mark.setAttribute("aria-label", check.ok ? "yes" : "no");
      li.append(mark, document.createTextNode(" " + check.text));
      list.appendChild(li);
    }
    box.appendChild(list);
  }

  for (const btn of document.querySelectorAll("button[data-test-cluster]")) {
    btn.addEventListener("click", async () => {
      const id = btn.dataset.testCluster;
      const row = document.querySelector(`tr[data-test-result="${CSS.escape(id)}"]`);
      const box = row.querySelector(".test-result");
      row.hidden = false;
      box.replaceChildren();
      box.textContent = "Testing the connection…";
      btn.disabled = true;
      try {
        showResult(box, await Bastion.api("POST", `/api/clusters/${encodeURIComponent(id)}/test`, {}));
      } catch (err) {
        box.replaceChildren();
        const p = document.createElement("p");
        p.className = "error-text";
        p.textContent = err.message;
        box.appendChild(p);
      } finally {
        btn.disabled = false;
      }
    });
  }
  showWarning();
})();
