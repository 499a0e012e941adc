// Playback: asciinema-player with speed control, the session's commands beside it (click to seek),
// and the recording's verification status. Text from recordings is only ever set with textContent.
"use strict";

(() => {
  const root = document.getElementById("play");
  const id = root.dataset.sessionId;
  const list = document.getElementById("command-list");
  const verifyEl = document.getElementById("verify");
  const speedEl = document.getElementById("speed");
  const params = new URLSearchParams(location.search);
  let player = null;
  let pendingSeek = params.has("t") ? Math.max(0, parseFloat(params.get("t")) - 3) : null;

  function create(startAt) {
    const el = document.getElementById("player");
    if (!el) return;
    if (player) { player.dispose(); el.replaceChildren(); }
    player = AsciinemaPlayer.create(`/api/sessions/${encodeURIComponent(id)}/recording`, el, {
      speed: parseFloat(speedEl.value), startAt: startAt || 0, fit: "width", idleTimeLimit: 3,
      terminalFontSize: "14px", preload: true, autoPlay: startAt !== undefined && startAt > 0,
    });
    window.bastionPlayer = player;
  }

  async function seek(seconds) {
    if (!player) return;
    await player.seek(Math.max(0, seconds));
    await player.play();
  }

  speedEl.addEventListener("change", async () => {
    const at = player ? await player.getCurrentTime() : 0;
    create(at);
  });

  async function loadCommands() {
    try {
      const data = await Bastion.api("GET", `/api/sessions/${encodeURIComponent(id)}/commands`);
      list.replaceChildren();
      if (!data.items.length) {
        const li = document.createElement("li");
        li.className = "muted";
        li.textContent = "No commands were extracted.";
        list.appendChild(li);
      }
      for (const c of data.items) {
        const li = document.createElement("li");
        li.className = c.blocked ? "blocked" : c.flagged ? "flagged" : "";
        li.dataset.offset = String(c.offset);
        const at = document.createElement("span");
        at.className = "at";
        const m = Math.floor(c.offset / 60), s = Math.floor(c.offset % 60);
        at.textContent = `${m}:${String(s).padStart(2, "0")}`;
        const text = document.createElement("span");
        // a held command says who decided it; a shared session says who typed it (c.by, from the recording's input)
        const outcome = c.review ? `  [${c.review}]` : c.blocked ? "  [blocked]" : c.flagged ? "  [flagged]" : "";
        text.textContent = c.text + outcome;
        if (c.by) {
          const by = document.createElement("span");
          by.className = "by";
          by.textContent = c.by;
          li.append(at, by, text);
        } else {
          li.append(at, text);
        }
        li.title = "Play from a few seconds before this command";
        li.addEventListener("click", () => seek(c.offset - 3));
        list.appendChild(li);
      }
    } catch (err) { Bastion.toast(err.message, true); }
  }

  async function verify() {
    try {
      const r = await Bastion.api("GET", `/api/sessions/${encodeURIComponent(id)}/verify`);
      verifyEl.textContent = r.ok ? "verified" : "tampered";
      verifyEl.className = "badge " + (r.ok ? "good" : "bad");
      verifyEl.title = r.message;
      if (!r.ok) Bastion.toast(r.message, true);
    } catch (err) {
      verifyEl.textContent = "not verifiable";
      verifyEl.className = "badge warn";
      verifyEl.title = err.message;
    }
  }

  // The command list follows playback: the last command at or before the player's time is highlighted and
  // scrolled into the list's view (the list scrolls, never the page).
  let current = null;
  async function follow() {
    if (!player) return;
    let t;
    try { t = await player.getCurrentTime(); } catch (err) { return; }
    let hit = null;
    for (const li of list.querySelectorAll("li[data-offset]")) {
      if (Number(li.dataset.offset) <= t + 0.05) hit = li; else break;
    }
    if (hit === current) return;
    if (current) { current.classList.remove("current"); current.removeAttribute("aria-current"); }
    current = hit;
    if (!hit) return;
    hit.classList.add("current");
    hit.setAttribute("aria-current", "true");
    const top = hit.offsetTop, bottom = top + hit.offsetHeight;
    if (top < list.scrollTop || bottom > list.scrollTop + list.clientHeight) {
      list.scrollTop = Math.max(0, top - list.clientHeight / 3);
    }
  }
  setInterval(follow, 250);

  if (root.dataset.available === "1") {
    create(pendingSeek || 0);
    if (pendingSeek) setTimeout(() => seek(pendingSeek), 300);
  }
  loadCommands();
  if (root.dataset.available === "1") verify();
  else { // no recording file (never written, or deleted by retention): nothing to verify, and no failing request
    verifyEl.textContent = "no recording";
    verifyEl.className = "badge warn";
  }
})();
