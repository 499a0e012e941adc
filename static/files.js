// The terminal page's file panel: list a directory of the host, upload (picker or drag and drop), download.
// Names from the host are inserted with textContent only.
"use strict";

(() => {
  const panel = document.getElementById("files-panel");
  const toggle = document.getElementById("files-toggle");
  if (!panel || !toggle) return;
  const hostId = panel.dataset.hostId;
  const pathInput = document.getElementById("files-path");
  const rows = document.getElementById("files-rows");
  const status = document.getElementById("files-status");
  const drop = document.getElementById("files-drop");
  const picker = document.getElementById("files-input");
  let current = "";

  function xsrf() {
    const m = document.cookie.match(/(?:^|;\s*)_xsrf=([^;]+)/);
    return m ? decodeURIComponent(m[1]) : "";
  }
  function sessionId() {
    const text = (document.getElementById("session-id") || {}).textContent || "";
    return /^[0-9a-f]{16}$/.test(text) ? text : "";
  }
  function say(text, isError) {
    status.textContent = text;
    status.className = "files-status" + (isError ? " error" : "");
  }
  function fileUrl(path) {
    const q = new URLSearchParams({ path, session: sessionId() });
    return `/api/hosts/${encodeURIComponent(hostId)}/file?${q}`;
  }
  function join(dir, name) {
    return dir.endsWith("/") ? dir + name : `${dir}/${name}`;
  }
  function size(n) {
    if (n < 1024) return `${n} B`;
    if (n < 1048576) return `${(n / 1024).toFixed(1)} KiB`;
    return `${(n / 1048576).toFixed(1)} MiB`;
  }
  async function errorOf(res) {
    try { return (await res.json()).error || res.statusText; } catch (e) { return res.statusText; }
  }

  async function list(path) {
    say("loading…");
    const res = await fetch(`/api/hosts/${encodeURIComponent(hostId)}/files?${new URLSearchParams({ path })}`,
      { headers: { Accept: "application/json" }, credentials: "same-origin" });
    if (!res.ok) { say(await errorOf(res), true); return; }
    const data = await res.json();
    current = data.path;
    pathInput.value = data.path;
    rows.replaceChildren();
    for (const entry of data.entries) {
      const tr = document.createElement("tr");
      tr.dataset.name = entry.name;
      const name = document.createElement("td");
      const link = document.createElement("a");
      link.textContent = entry.dir ? entry.name + "/" : entry.name;
      if (entry.dir) {
        link.href = "#";
        link.className = "files-dir";
        link.addEventListener("click", (ev) => { ev.preventDefault(); list(join(current, entry.name)); });
      } else if (data.download) {
        link.href = fileUrl(join(current, entry.name));
        link.className = "files-download";
        link.setAttribute("download", entry.name);
      }
      name.appendChild(link);
      const sz = document.createElement("td");
      sz.className = "size";
      sz.textContent = entry.dir ? "" : size(entry.size);
      tr.append(name, sz);
      rows.appendChild(tr);
    }
    drop.hidden = !data.upload;
    say(`${data.entries.length} entries` + (data.upload ? "" : " · upload is not permitted") +
        (data.download ? "" : " · download is not permitted"));
  }

  async function upload(files) {
    for (const file of files) {
      say(`uploading ${file.name}…`);
      const res = await fetch(fileUrl(join(current, file.name)), {
        method: "PUT", body: file, credentials: "same-origin",
        headers: { "X-XSRFToken": xsrf(), "Content-Type": "application/octet-stream", Accept: "application/json" },
      });
      if (!res.ok) { say(`${file.name}: ${await errorOf(res)}`, true); return; }
      const done = await res.json();
      say(`uploaded ${file.name} (${size(done.size)}, sha256 ${done.sha256.slice(0, 12)}…)`);
    }
    await list(current);
    say(`uploaded ${files.length} file${files.length === 1 ? "" : "s"}`);
  }

  toggle.addEventListener("click", () => {
    panel.hidden = !panel.hidden;
    toggle.setAttribute("aria-expanded", String(!panel.hidden));
    if (!panel.hidden && !current) list("");
  });
  document.getElementById("files-path-form").addEventListener("submit", (ev) => { ev.preventDefault(); list(pathInput.value); });
  document.getElementById("files-up").addEventListener("click", () => {
    const parent = current.replace(/\/[^/]*\/?$/, "") || "/";
    list(parent);
  });
  picker.addEventListener("change", () => { if (picker.files.length) upload([...picker.files]); picker.value = ""; });
  drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    drop.classList.remove("over");
    if (ev.dataTransfer && ev.dataTransfer.files.length) upload([...ev.dataTransfer.files]);
  });
})();
