// Terminal page (owner, read-write) and watch page (monitor, read-only): binary frames are output bytes,
// text frames are JSON control messages. Nothing received is ever inserted as HTML.
"use strict";

(() => {
  // xterm.js creates <style> elements for its theme, cell size and scrollbar. The page's CSP admits only
  // <style> elements carrying this response's nonce, and a nonce counts only if present before the element is
  // inserted, so stamp it when the element is created (see XTERM_STYLE_SRC in handlers/base.py).
  const nonceMeta = document.querySelector('meta[name="xterm-style-nonce"]');
  const styleNonce = nonceMeta ? nonceMeta.content : "";
  if (styleNonce) {
    const createElement = document.createElement;
    document.createElement = function (tagName, options) {
      const node = createElement.call(this, tagName, options);
      if (String(tagName).toLowerCase() === "style") node.setAttribute("nonce", styleNonce);
      return node;
    };
  }
  const el = document.getElementById("terminal");
  // a joined participant (join page) follows the owner's size like a watcher; a peer may also type
  const joined = document.body.dataset.page === "join";
  const watching = document.body.dataset.page === "watch" || joined;
  const typing = !watching || (joined && el.dataset.mode === "peer");
  const statusEl = document.getElementById("status");
  const banner = document.getElementById("banner");
  const term = new Terminal({
    cursorBlink: typing, disableStdin: !typing, scrollback: 5000, fontSize: 14,
    fontFamily: "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace",
    theme: { background: "#0d1117", foreground: "#c9d1d9" },
    // OSC 8 links: only http(s), opened without access to this page; never javascript: or others.
    linkHandler: {
      activate: (event, uri) => {
        if (/^https?:\/\//i.test(uri)) window.open(uri, "_blank", "noopener,noreferrer");
      },
      allowNonHttpProtocols: false,
    },
  });
  window.bastionTerm = term; // for tests and the browser console
  let fit = null;
  if (!watching && window.FitAddon) {
    fit = new FitAddon.FitAddon();
    term.loadAddon(fit);
  }
  term.open(el);
  if (fit) fit.fit();
  if (watching) {
    // xterm.js draws no cursor until the terminal was focused once; a watcher must see where the user's cursor is
    term.focus();
    term.blur();
  }
  let ended = false;

  function setStatus(text, cls) {
    statusEl.textContent = text;
    statusEl.className = "status " + (cls || "");
  }
  function showBanner(text, notice, level) {
    banner.textContent = text;
    banner.className = "term-banner" + (notice && level !== "error" ? " notice" : "");
    banner.hidden = false;
    if (notice) setTimeout(() => { if (!ended) banner.hidden = true; }, 6000);
  }
  function endWith(reason) {
    if (ended) return;
    ended = true;
    setStatus("ended", "ended");
    showBanner(`Session ended: ${reason}`, false);
    term.options.disableStdin = true;
    term.options.cursorBlink = false;
    const endBtn = document.getElementById("end-session");
    if (endBtn) endBtn.hidden = true; // nothing left to end
  }

  if (watching && el.dataset.live !== "1") {
    endWith(el.dataset.reason || "not live");
    return;
  }

  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const base = joined ? `${proto}//${location.host}${el.dataset.socket}` : watching
    ? `${proto}//${location.host}/ws/monitor/${encodeURIComponent(el.dataset.sessionId)}`
    : el.dataset.socket  // a pod terminal names its own socket path (query included)
      ? `${proto}//${location.host}${el.dataset.socket}&`
      : `${proto}//${location.host}/ws/terminal/${encodeURIComponent(el.dataset.hostId)}?`;
  // A reload or a lost connection re-attaches to the same live session within the server's grace period: the
  // session id is kept for this tab (sessionStorage), and a socket that drops is re-opened with it.
  const resumeKey = watching ? null : `bastion.session.${el.dataset.socket || el.dataset.hostId}`;
  let sessionId = resumeKey ? sessionStorage.getItem(resumeKey) : null;
  let lostAt = 0;
  let ws = null;

  function open(resume, fresh) {
    let url = base;
    if (!watching) {
      url += `cols=${term.cols}&rows=${term.rows}`;
      if (resume) url += `&session=${encodeURIComponent(resume)}&fresh=${fresh ? 1 : 0}`;
    }
    const socket = new WebSocket(url);
    let opened = false;
    socket.binaryType = "arraybuffer";
    window.bastionSocket = ws = socket;
    socket.onopen = () => {
      opened = true;
      if (!resume) setStatus(watching ? "watching" : "connecting to host…");
    };
    socket.onmessage = (ev) => {
      if (typeof ev.data !== "string") {
        if (!ended && statusEl.textContent.startsWith("connecting")) setStatus("connected", "ok");
        term.write(new Uint8Array(ev.data));
        return;
      }
      let msg;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      if (msg.type === "session") {
        const sid = document.getElementById("session-id");
        if (sid) sid.textContent = msg.id;
        if (watching) setStatus("watching", "ok");
        if (resumeKey) { sessionId = String(msg.id); sessionStorage.setItem(resumeKey, sessionId); }
        if (msg.resumed) { lostAt = 0; setStatus("connected", "ok"); }
      } else if (msg.type === "notice") {
        showBanner(String(msg.message), true, msg.level);
      } else if (msg.type === "resize" && watching) {
        term.resize(Math.max(1, msg.cols | 0), Math.max(1, msg.rows | 0));
      } else if (msg.type === "command" && watching) {
        if (msg.blocked) showBanner(`blocked command: ${String(msg.command)}`, true, "error");
      } else if (msg.type === "closed") {
        if (resumeKey) sessionStorage.removeItem(resumeKey);
        endWith(String(msg.reason));
      }
    };
    socket.onclose = (ev) => {
      if (ended || socket !== ws) return;
      if (resume && fresh && !opened) {  // the stored session is gone (ended, or past its grace): start a new one
        sessionStorage.removeItem(resumeKey);
        sessionId = null;
        open(null, true);
        return;
      }
      if (!watching && sessionId && (opened || lostAt)) {  // try to get back to it, for up to a minute
        const now = Date.now();
        if (!lostAt) lostAt = now;
        if (now - lostAt < 60000) {
          setStatus("reconnecting…", "");
          showBanner("connection to the bastion was lost; reconnecting…", true, "warn");
          setTimeout(() => { if (!ended) open(sessionId, false); }, Math.min(4000, 500 + (now - lostAt) / 4));
          return;
        }
      }
      endWith(ev.code === 1006 ? "connection to the bastion was lost" : "the connection closed");
    };
  }
  open(sessionId, true);

  function send(obj) { if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(obj)); }

  // A large paste arrives as one onData call; send it as input frames of at most MAX_FRAME bytes (UTF-8 of the
  // JSON frame), split between code points, so no single frame is huge. Order is kept by the socket.
  const MAX_FRAME = 4096;
  const FRAME_OVERHEAD = JSON.stringify({ type: "input", data: "" }).length;
  function frameBytes(cp) { // bytes of one code point inside the JSON frame (escapes counted at their longest)
    if (cp < 0x20 || (cp >= 0xd800 && cp <= 0xdfff)) return 6;
    if (cp === 0x22 || cp === 0x5c) return 2;
    return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
  }
  function sendInput(data) {
    if (data.length * 6 + FRAME_OVERHEAD <= MAX_FRAME) { send({ type: "input", data }); return; }
    let chunk = "";
    let size = FRAME_OVERHEAD;
    for (const ch of data) { // iterates code points, never splitting a surrogate pair
      const cost = frameBytes(ch.codePointAt(0));
      if (size + cost > MAX_FRAME) {
        send({ type: "input", data: chunk });
        chunk = "";
        size = FRAME_OVERHEAD;
      }
      chunk += ch;
      size += cost;
    }
    if (chunk) send({ type: "input", data: chunk });
  }

  if (!watching) {
    term.onData(sendInput);
    term.onResize(({ cols, rows }) => send({ type: "resize", cols, rows }));
    let timer = null;
    window.addEventListener("resize", () => {
      clearTimeout(timer);
      timer = setTimeout(() => fit.fit(), 80);
    });
    term.attachCustomKeyEventHandler((e) => {
      if (e.type !== "keydown" || !e.ctrlKey || !e.shiftKey) return true;
      if (e.code === "KeyC") {
        const sel = term.getSelection();
        if (sel && navigator.clipboard) navigator.clipboard.writeText(sel).catch(() => {});
        return false;
      }
      if (e.code === "KeyV") {
        // Not a key for the host: the browser then fires its own paste event, which xterm.js handles once
        // (bracketing it when the host asked for bracketed paste). Reading the clipboard here as well pasted twice.
        return false;
      }
      return true;
    });
    term.focus();
  } else if (typing) {
    term.onData(sendInput);
    term.focus();
  } else {
    const endBtn = document.getElementById("end-session");
    if (endBtn) endBtn.addEventListener("click", async () => {
      const reason = window.prompt("Reason for ending this session (shown to the user):", "ended by security team");
      if (!reason) return;
      try {
        await Bastion.api("POST", `/api/sessions/${encodeURIComponent(endBtn.dataset.sessionId)}/kill`, { reason });
      } catch (err) { Bastion.toast(err.message, true); }
    });
  }
})();
