// Module page: pick hosts (by category), a module, fill its parameters (rendered from the schema with
// createElement, never HTML), run; admins reserve a new module id and see the file template.
"use strict";

(() => {
  const form = document.getElementById("run-form");
  const fields = document.getElementById("param-fields");
  const hint = document.getElementById("run-hint");
  const runButton = document.getElementById("run-button");
  const errorEl = form.querySelector(".form-error");
  let modules = {};
  let selected = null;

  // Hosts shown: those of the chosen category (others are unticked) whose name has every typed word (a host the
  // search hides stays ticked, so several searches add up); the count says how many are ticked in all.
  const categoryFilter = document.getElementById("category-filter");
  const hostFind = document.getElementById("host-find");
  const picked = document.getElementById("hosts-picked");
  function countPicked() {
    const n = document.querySelectorAll(".host-pick input:checked").length;
    picked.textContent = n ? `${n} host${n === 1 ? "" : "s"} selected` : "";
  }
  function filterHosts() {
    const words = hostFind.value.toLowerCase().split(/\s+/).filter(Boolean);
    for (const label of document.querySelectorAll(".host-pick")) {
      const inCategory = !categoryFilter.value || label.dataset.appId === categoryFilter.value;
      const text = label.textContent.toLowerCase();
      label.hidden = !inCategory || !words.every((w) => text.includes(w));
      if (!inCategory) label.querySelector("input").checked = false;
    }
    countPicked();
  }
  categoryFilter.addEventListener("change", filterHosts);
  hostFind.addEventListener("input", filterHosts);
  document.getElementById("host-picks").addEventListener("change", countPicked);
  document.getElementById("select-all").addEventListener("click", () => {
    for (const label of document.querySelectorAll(".host-pick")) if (!label.hidden) label.querySelector("input").checked = true;
    countPicked();
  });

  function field(p) {
    const label = document.createElement("label");
    label.textContent = p.label + (p.required ? " *" : "");
    let input;
    if (p.type === "choice") {
      input = document.createElement("select");
      for (const c of p.choices) {
        const o = document.createElement("option");
        o.value = c; o.textContent = c;
        if (c === p.default) o.selected = true;
        input.appendChild(o);
      }
    } else {
      input = document.createElement("input");
      input.type = p.type === "int" ? "number" : p.type === "secret" ? "password" : "text";
      if (p.type === "int") { if (p.min != null) input.min = p.min; if (p.max != null) input.max = p.max; }
      if (p.pattern) input.pattern = p.pattern;
      if (p.max_length) input.maxLength = p.max_length;
      if (p.default != null) input.value = p.default;
    }
    input.name = p.name;
    input.dataset.type = p.type;
    label.appendChild(input);
    if (p.help) {
      const help = document.createElement("span");
      help.className = "muted small";
      help.textContent = p.help;
      label.appendChild(help);
    }
    return label;
  }

  function choose(id) {
    const m = modules[id];
    if (!m) return;
    selected = m;
    for (const li of document.querySelectorAll(".module-list li")) li.classList.toggle("selected", li.dataset.moduleId === id);
    fields.replaceChildren(...m.params.map(field));
    hint.textContent = `${m.id} · ${m.name}` + (m.params.length ? "" : " (no parameters)");
    runButton.disabled = false;
  }

  for (const btn of document.querySelectorAll(".module-pick")) btn.addEventListener("click", () => choose(btn.dataset.moduleId));

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    errorEl.textContent = "";
    if (!selected) return;
    const hostIds = [...document.querySelectorAll(".host-pick input:checked")].map((i) => i.value);
    if (!hostIds.length) { errorEl.textContent = "Choose at least one host."; return; }
    const params = {};
    for (const input of fields.querySelectorAll("input, select")) {
      if (input.value === "") continue;
      params[input.name] = input.dataset.type === "int" ? Number(input.value) : input.value;
    }
    runButton.disabled = true;
    try {
      const run = await Bastion.api("POST", `/api/modules/${encodeURIComponent(selected.id)}/runs`, { host_ids: hostIds, params });
      window.location.assign(`/runs/${encodeURIComponent(run.run_id)}`);
    } catch (err) {
      errorEl.textContent = Bastion.formMessage(form, err.message);
      runButton.disabled = false;
    }
  });

  const newBtn = document.getElementById("new-module");
  if (newBtn) {
    newBtn.addEventListener("click", async () => {
      try {
        const r = await Bastion.api("POST", "/api/modules/reserve");
        document.getElementById("template-card").hidden = false;
        document.getElementById("template-name").textContent = r.id;
        document.getElementById("template-file").textContent = r.filename;
        document.getElementById("template-text").textContent = r.template;
      } catch (err) { Bastion.toast(err.message, true); }
    });
  }

  Bastion.api("GET", "/api/modules").then((data) => {
    for (const m of data.items) modules[m.id] = m;
  }).catch((err) => Bastion.toast(err.message, true));
})();
