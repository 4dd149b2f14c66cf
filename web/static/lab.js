// docklab lab panel: starts a session machine, attaches xterm.js to its terminal WebSocket,
// shows the session's status and the live task list, and types runnable snippets.
//
// Wire contract (see the API doc): POST /api/sessions, DELETE /api/sessions/{id},
// GET /api/sessions/{id}, WebSocket /api/sessions/{id}/terminal?token=... with binary frames for
// terminal bytes and JSON text frames for control messages.
(function () {
  "use strict";

  const lab = document.getElementById("lab");
  if (!lab) return;

  const exercise = lab.dataset.exercise;
  const statusEl = document.getElementById("lab-status");
  const statusText = statusEl.querySelector(".status-text");
  const startBtn = document.getElementById("start-lab");
  const endBtn = document.getElementById("end-lab");
  const message = document.getElementById("lab-message");
  const placeholder = document.getElementById("lab-placeholder");
  const termEl = document.getElementById("terminal");
  const progress = document.getElementById("lab-progress");
  const storageKey = "docklab.session." + exercise;
  const encoder = new TextEncoder();

  const LABELS = {
    idle: "Not started",
    starting: "Starting",
    ready: "Ready",
    reconnecting: "Reconnecting",
    ended: "Ended",
    error: "Error",
  };

  let session = null; // {id, token, terminal}
  let ws = null;
  let term = null;
  let fit = null;
  let attempt = 0; // reconnect attempts since the last successful open
  let reconnectTimer = null;
  let closing = false; // true once we decided the session is over; no more reconnects
  let pending = []; // snippets clicked before the terminal was ready
  let lastSize = "";

  // ---- status -------------------------------------------------------------------------------

  function setStatus(state, reason) {
    statusEl.dataset.state = state;
    statusText.textContent = LABELS[state] + (reason ? ": " + reason : "");
    statusEl.title = reason || "";
    lab.dataset.state = state;
  }

  function showMessage(text) {
    message.textContent = text || "";
    message.hidden = !text;
  }

  function showPlaceholder(show, title) {
    placeholder.hidden = !show;
    termEl.hidden = show;
    if (title) placeholder.querySelector(".placeholder-title").textContent = title;
    if (!show) requestAnimationFrame(fitTerminal);
  }

  // ---- session storage (so a reload reattaches) ---------------------------------------------

  function saveSession(s) {
    try {
      sessionStorage.setItem(storageKey, JSON.stringify(s));
    } catch (_) {
      /* storage may be disabled; the lab still works until reload */
    }
  }

  function loadSession() {
    try {
      const s = JSON.parse(sessionStorage.getItem(storageKey) || "null");
      return s && s.id && s.token ? s : null;
    } catch (_) {
      return null;
    }
  }

  function forgetSession() {
    try {
      sessionStorage.removeItem(storageKey);
    } catch (_) {}
  }

  // ---- HTTP ---------------------------------------------------------------------------------

  async function errorSentence(response) {
    try {
      const body = await response.json();
      if (body && body.error) return body.error;
    } catch (_) {}
    return "The server answered " + response.status + " " + response.statusText + ".";
  }

  async function startLab() {
    if (session) return;
    closing = false;
    startBtn.disabled = true;
    showMessage("");
    setStatus("starting");
    placeholder.querySelector(".placeholder-title").textContent = "Starting your machine…";
    try {
      const response = await fetch("/api/sessions", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ exercise: exercise }),
      });
      if (!response.ok) throw new Error(await errorSentence(response));
      const body = await response.json();
      session = { id: body.id, token: body.token, terminal: body.terminal };
      saveSession(session);
      attach();
    } catch (err) {
      failed(err.message || String(err));
    }
  }

  function failed(text) {
    session = null;
    setStatus("error");
    showPlaceholder(true, "The lab could not start");
    showMessage(text);
    startBtn.disabled = false;
    startBtn.textContent = "Try again";
    endBtn.hidden = true;
  }

  async function endLab() {
    if (!session) return;
    const s = session;
    endBtn.disabled = true;
    closing = true;
    clearTimeout(reconnectTimer);
    try {
      const response = await fetch("/api/sessions/" + encodeURIComponent(s.id), {
        method: "DELETE",
        headers: { Authorization: "Bearer " + s.token },
      });
      if (!response.ok && response.status !== 404) {
        closing = false;
        endBtn.disabled = false;
        showMessage(await errorSentence(response));
        return;
      }
    } catch (err) {
      closing = false;
      endBtn.disabled = false;
      showMessage("The lab could not be ended: " + (err.message || err));
      return;
    }
    ended("you ended the lab");
  }

  // Other scripts of the page (the live visuals) follow the session through DOM events:
  // `docklab:session` (detail {id, token}, or null once the lab has ended) and `docklab:control`
  // (every control message from the terminal socket).
  function announce(name, detail) {
    document.dispatchEvent(new CustomEvent(name, { detail: detail }));
  }

  function ended(reason) {
    if (session) announce("docklab:session", null);
    closing = true;
    clearTimeout(reconnectTimer);
    if (ws) {
      ws.onclose = null;
      ws.close(1000);
      ws = null;
    }
    session = null;
    forgetSession();
    setStatus("ended", reason);
    endBtn.hidden = true;
    endBtn.disabled = false;
    startBtn.disabled = false;
    startBtn.textContent = "Start a fresh machine";
    showPlaceholder(true, "This lab has ended");
    showMessage("");
    pending = [];
  }

  // ---- terminal -----------------------------------------------------------------------------

  function ensureTerminal() {
    if (term) return;
    term = new window.Terminal({
      cursorBlink: true,
      convertEol: false,
      fontFamily: '"DejaVu Sans Mono", "SFMono-Regular", Menlo, Consolas, "Liberation Mono", monospace',
      fontSize: 14,
      lineHeight: 1.15,
      scrollback: 5000,
      theme: {
        background: "#0b1220",
        foreground: "#e2e8f0",
        cursor: "#60a5fa",
        selectionBackground: "#1e3a8a",
        black: "#1e293b",
        brightBlack: "#64748b",
        red: "#f87171",
        green: "#4ade80",
        yellow: "#facc15",
        blue: "#60a5fa",
        magenta: "#c084fc",
        cyan: "#22d3ee",
        white: "#e2e8f0",
      },
    });
    fit = new window.FitAddon.FitAddon();
    term.loadAddon(fit);
    termEl.hidden = false;
    term.open(termEl);
    window.docklabTerm = term;

    term.onData(function (data) {
      sendBytes(encoder.encode(data));
    });
    // Some mouse reports arrive as "binary" strings: one char per byte.
    term.onBinary(function (data) {
      const bytes = new Uint8Array(data.length);
      for (let i = 0; i < data.length; i++) bytes[i] = data.charCodeAt(i) & 0xff;
      sendBytes(bytes);
    });
    term.onResize(sendSize);

    if (window.ResizeObserver) {
      new ResizeObserver(function () {
        fitTerminal();
      }).observe(termEl);
    }
    window.addEventListener("resize", fitTerminal);
  }

  function fitTerminal() {
    if (!fit || termEl.hidden) return;
    try {
      fit.fit();
    } catch (_) {
      /* not laid out yet */
    }
  }

  function sendSize() {
    if (!term || !ws || ws.readyState !== WebSocket.OPEN) return;
    const size = term.cols + "x" + term.rows;
    if (size === lastSize) return;
    lastSize = size;
    ws.send(JSON.stringify({ type: "resize", cols: term.cols, rows: term.rows }));
  }

  function sendBytes(bytes) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(bytes);
  }

  // ---- WebSocket ----------------------------------------------------------------------------

  function terminalUrl(s) {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const path = s.terminal || "/api/sessions/" + encodeURIComponent(s.id) + "/terminal";
    return scheme + "//" + location.host + path + "?token=" + encodeURIComponent(s.token);
  }

  function attach() {
    if (!session || closing) return;
    ensureTerminal();
    showPlaceholder(false);
    endBtn.hidden = false;
    startBtn.disabled = true;

    const socket = new WebSocket(terminalUrl(session));
    socket.binaryType = "arraybuffer";
    ws = socket;
    let opened = false;

    socket.onopen = function () {
      opened = true;
      attempt = 0;
      lastSize = "";
      fitTerminal();
      sendSize();
      term.focus();
      if (session) announce("docklab:session", { id: session.id, token: session.token });
    };

    socket.onmessage = function (event) {
      if (typeof event.data === "string") {
        control(event.data);
        return;
      }
      term.write(new Uint8Array(event.data));
      // Output means the shell is up, even if the status message was missed.
      if (statusEl.dataset.state !== "ready") setStatus("ready");
      flushPending();
    };

    socket.onclose = function (event) {
      if (ws !== socket) return;
      ws = null;
      if (closing || !session) return;
      scheduleReconnect(opened, event);
    };
  }

  function control(text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch (_) {
      return;
    }
    announce("docklab:control", msg);
    if (msg.type === "status") {
      if (msg.state === "ended") {
        ended(msg.reason || "the session is over");
      } else if (msg.state === "ready" || msg.state === "reconnecting") {
        setStatus(msg.state, msg.reason);
        if (msg.state === "ready") flushPending();
      }
    } else if (msg.type === "checks" && Array.isArray(msg.tasks)) {
      updateTasks(msg.tasks);
    } else if (msg.type === "ports" && Array.isArray(msg.ports)) {
      showPorts(msg.ports);
    }
  }

  // Ports published in the machine (`docker run -p 8080:80 …`), as links through the preview.
  // The links go to the session's preview URL (`/preview/{id}/{key}/{port}/`): the key in the
  // path is all the preview needs, so the session token never goes into a link.
  let previewBase = null; // {id, base} of the session it was asked for
  async function previewBaseFor(s) {
    if (previewBase && previewBase.id === s.id) return previewBase.base;
    const response = await fetch("/api/sessions/" + encodeURIComponent(s.id) + "/preview", {
      headers: { Authorization: "Bearer " + s.token, Accept: "application/json" },
    });
    if (!response.ok) throw new Error("preview: HTTP " + response.status);
    const body = await response.json();
    // `/preview/…`, or `https://<preview name>/preview/…` when the server has a --preview-url.
    if (typeof body.base !== "string" || !/^(https?:\/\/[^/]+)?\/preview\//.test(body.base)) throw new Error("preview: no base");
    previewBase = { id: s.id, base: body.base };
    return body.base;
  }

  let portsShown = 0; // the latest ports message wins, whatever order the asks end in
  async function showPorts(ports) {
    const seq = ++portsShown;
    const s = session;
    let base = null;
    if (s && ports.length > 0) {
      try {
        base = await previewBaseFor(s);
      } catch (err) {
        console.warn("docklab: no port preview:", err);
      }
    }
    if (seq !== portsShown) return;
    if (s !== session) base = null; // the session ended while we asked
    let box = document.getElementById("lab-ports");
    if (!box) {
      box = document.createElement("div");
      box.id = "lab-ports";
      box.className = "lab-ports";
      const terminal = document.getElementById("terminal");
      terminal.parentNode.insertBefore(box, terminal);
    }
    box.textContent = "";
    if (!session || ports.length === 0 || !base) {
      box.hidden = true;
      return;
    }
    box.hidden = false;
    const label = document.createElement("span");
    label.className = "lab-ports-label";
    label.textContent = "Published ports:";
    box.appendChild(label);
    for (const p of ports) {
      const port = Number(p.port);
      if (!Number.isInteger(port) || port < 1 || port > 65535) continue;
      const a = document.createElement("a");
      a.href = base + port + "/";
      a.target = "_blank";
      a.rel = "noopener";
      a.className = "lab-port";
      a.textContent = port + " → " + String(p.container || "") + ":" + Number(p.target);
      a.title = "Open what listens on port " + port + " in your machine";
      box.appendChild(a);
    }
  }

  async function scheduleReconnect(wasOpen, event) {
    attempt += 1;
    // If the socket never opened, the session may be gone (expired, deleted elsewhere): ask.
    if (!wasOpen && attempt >= 2) {
      const state = await sessionState();
      if (state === "gone") {
        ended("the session no longer exists");
        return;
      }
    }
    const delay = Math.min(10000, 500 * Math.pow(2, attempt - 1)) * (0.8 + Math.random() * 0.4);
    const why = event && event.reason ? event.reason : "connection lost";
    setStatus("reconnecting", why);
    reconnectTimer = setTimeout(attach, delay);
  }

  // "alive", "gone" or "unknown" (network trouble: keep trying).
  async function sessionState() {
    if (!session) return "gone";
    try {
      const response = await fetch("/api/sessions/" + encodeURIComponent(session.id), {
        headers: { Authorization: "Bearer " + session.token, Accept: "application/json" },
      });
      if (response.status === 404 || response.status === 401 || response.status === 403) return "gone";
      if (!response.ok) return "unknown";
      const body = await response.json();
      return body && body.state === "stopped" ? "gone" : "alive";
    } catch (_) {
      return "unknown";
    }
  }

  // ---- tasks --------------------------------------------------------------------------------

  function updateTasks(tasks) {
    for (const t of tasks) {
      if (!t || !t.id) continue;
      const li = lab.querySelector('.task[data-task-id="' + CSS.escape(t.id) + '"]');
      if (!li) continue;
      const status = t.status === "passed" || t.status === "failed" ? t.status : "pending";
      li.dataset.status = status;
      const detail = li.querySelector(".task-detail");
      detail.textContent = status === "passed" ? "" : t.detail || "";
      detail.hidden = !detail.textContent;
    }
    const all = lab.querySelectorAll(".task");
    const done = lab.querySelectorAll('.task[data-status="passed"]');
    if (progress) progress.textContent = done.length + " of " + all.length + " done";
    lab.classList.toggle("all-done", all.length > 0 && done.length === all.length);
  }

  // ---- hints --------------------------------------------------------------------------------

  // Opening a task's hints while a lab runs reveals them through the API, which records them in
  // the learner's progress (one request per hint not yet recorded in this session).
  document.addEventListener(
    "toggle",
    function (event) {
      const details = event.target;
      if (!details.matches || !details.matches("details.hints") || !details.open || !session) return;
      const li = details.closest(".task");
      if (!li) return;
      const shown = Number(li.dataset.hintsRecorded || 0);
      const total = details.querySelectorAll("li").length;
      li.dataset.hintsRecorded = String(total);
      const url = "/api/sessions/" + encodeURIComponent(session.id) + "/hints/" + encodeURIComponent(li.dataset.taskId);
      for (let i = shown; i < total; i++) {
        fetch(url, { method: "POST", headers: { Authorization: "Bearer " + session.token } }).catch(function () {});
      }
    },
    true
  );

  // ---- runnable snippets --------------------------------------------------------------------

  function typeSnippet(text) {
    // A terminal's Enter key sends CR; each line runs as if typed.
    const typed = text.replace(/\r?\n/g, "\r") + "\r";
    if (ws && ws.readyState === WebSocket.OPEN && statusEl.dataset.state === "ready") {
      sendBytes(encoder.encode(typed));
      term.focus();
    } else {
      pending.push(typed);
      if (!session) startLab();
    }
  }

  function flushPending() {
    if (!pending.length || !ws || ws.readyState !== WebSocket.OPEN) return;
    const queued = pending;
    pending = [];
    for (const typed of queued) sendBytes(encoder.encode(typed));
    term.focus();
  }

  document.addEventListener("click", function (event) {
    const button = event.target.closest(".run-snippet");
    if (!button) return;
    const pre = button.parentElement.querySelector("pre.snippet[data-run]");
    if (!pre) return;
    typeSnippet(pre.textContent);
    button.classList.add("sent");
    setTimeout(function () {
      button.classList.remove("sent");
    }, 900);
  });

  // ---- start --------------------------------------------------------------------------------

  startBtn.addEventListener("click", startLab);
  endBtn.addEventListener("click", endLab);

  const saved = loadSession();
  if (saved) {
    session = saved;
    setStatus("starting", "reattaching");
    attach();
  }

  // For tests and the curious.
  window.docklab = {
    start: startLab,
    end: endLab,
    get session() {
      return session ? { id: session.id } : null;
    },
  };
})();
