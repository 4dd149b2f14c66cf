// docklab classroom, three pages in one file:
//  * the instructor's live grid (#grid): built once, then each pushed event (server-sent events)
//    changes only the cells and row it is about, so a class of 200 stays responsive; filters and
//    sorting move or hide existing rows;
//  * the instructor's view of one learner's terminal (#watch): read-only, or writable during a
//    take-over;
//  * the class bar on a learner's lesson page (when they joined a class in this tab): messages
//    from the instructor, take-over notices, and the way on to the class's next exercise.
(function () {
  "use strict";

  const el = (tag, attrs, text) => {
    const e = document.createElement(tag);
    Object.assign(e, attrs || {});
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const minutes = (s) => Math.max(0, Math.floor(s / 60)) + " min";
  const clock = (t) => new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });

  async function errorSentence(r) {
    try {
      const body = await r.json();
      if (body && body.error) return body.error;
    } catch (_) {}
    return "The server answered " + r.status + ".";
  }

  // ---- the instructor's grid ------------------------------------------------------------------

  const gridEl = document.getElementById("grid");
  if (gridEl) grid(gridEl);

  function grid(gridEl) {
    const id = gridEl.dataset.class;
    const csrf = gridEl.dataset.csrf;
    let data = null;
    let columns = []; // task keys in order
    const rows = new Map(); // member → {learner, tr, cells: Map(key → td), progress, time, hints, name}
    let orderPending = false;

    const post = (path, body) =>
      fetch(path, {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf, Accept: "application/json" },
        body: body === undefined ? "" : JSON.stringify(body),
      });

    function timeOnTask(l) {
      const now = Date.now() / 1000;
      const ended = data.class.state === "ended" ? data.class.ended_at || data.class.ends_at : now;
      const end = Math.min(l.finished_at || now, ended, now);
      return end - l.joined_at;
    }

    function build() {
      rows.clear();
      columns = [];
      const table = el("table", { className: "class-grid" });
      const head = table.createTHead();
      const groups = head.insertRow();
      const tasks = head.insertRow();
      for (const label of ["Learner", "Exercise", "Done", "Time", "Hints", ""]) {
        groups.appendChild(el("th", { rowSpan: 2, className: "fixed" }, label));
      }
      data.exercises.forEach((e, i) => {
        groups.appendChild(el("th", { colSpan: e.tasks.length, className: "exercise", title: e.id }, i + 1 + ". " + e.title.replace(/`/g, "")));
        for (const t of e.tasks) {
          // Task titles are Markdown: drop the backticks in the narrow header.
          const plain = t.title.replace(/`/g, "");
          const th = el("th", { title: plain + " (" + t.key + ")", className: "task-col" });
          th.appendChild(el("span", {}, plain));
          tasks.appendChild(th);
          columns.push(t.key);
        }
      });
      const body = table.createTBody();
      for (const l of data.learners) body.appendChild(makeRow(l));
      gridEl.replaceChildren(table);
      order();
      updateEnds();
      showMessages();
    }

    function makeRow(l) {
      const tr = el("tr");
      tr.dataset.member = l.member;
      const name = el("td", { className: "name" });
      const exercise = el("td", { className: "num" });
      const progress = el("td", { className: "num" });
      const time = el("td", { className: "num" });
      const hints = el("td", { className: "num" });
      const actions = el("td", { className: "row-actions" });
      tr.append(name, exercise, progress, time, hints, actions);
      const cells = new Map();
      for (const key of columns) {
        const td = el("td", { className: "cell", title: key });
        cells.set(key, td);
        tr.appendChild(td);
      }
      const row = { learner: l, tr, cells, name, exercise, progress, time, hints, actions, passed: new Set() };
      rows.set(l.member, row);
      fill(row, l);
      return tr;
    }

    // Writes one learner's data into their row (only that row's cells change).
    function fill(row, l) {
      row.learner = l;
      row.tr.classList.toggle("stuck", !!l.stuck);
      row.tr.classList.toggle("finished", !!l.finished_at);
      row.name.replaceChildren();
      if (l.session) {
        row.name.appendChild(el("a", { href: "/classes/" + id + "/watch/" + l.member, target: "_blank", rel: "noopener" }, l.name));
      } else {
        row.name.appendChild(el("span", { title: "no machine running" }, l.name));
      }
      if (l.stuck) row.name.appendChild(el("span", { className: "stuck-marker", title: l.stuck_reason || "" }, "stuck: " + (l.stuck_reason || "")));
      if (l.taken_over) row.name.appendChild(el("span", { className: "takeover-marker" }, "you are typing"));
      row.exercise.textContent = l.exercise_index + 1 + "/" + data.exercises.length;
      for (const key of l.passed) markPassed(row, key);
      row.progress.textContent = row.passed.size + "/" + columns.length;
      row.time.textContent = minutes(timeOnTask(l));
      row.hints.textContent = String(l.hints);
      row.actions.replaceChildren();
      if (l.session) {
        const reset = el("button", { type: "button", className: "small", title: "A fresh machine for " + l.name }, "Reset");
        reset.addEventListener("click", () => resetLearner(l, reset));
        row.actions.appendChild(reset);
      }
    }

    function markPassed(row, key) {
      if (row.passed.has(key)) return;
      row.passed.add(key);
      const td = row.cells.get(key);
      if (td) {
        td.classList.add("passed");
        td.textContent = "✓";
      }
    }

    async function resetLearner(l, button) {
      if (!confirm("Reset " + l.name + "'s machine? Everything on it is lost.")) return;
      button.disabled = true;
      const r = await post("/api/classes/" + id + "/learners/" + l.member + "/reset");
      button.disabled = false;
      if (!r.ok) alert(await errorSentence(r));
    }

    // Hides rows that do not match the filters and puts the rest in the chosen order, at most
    // once per frame however many events arrive.
    function order() {
      if (orderPending) return;
      orderPending = true;
      requestAnimationFrame(() => {
        orderPending = false;
        const by = document.getElementById("sort").value;
        const needle = document.getElementById("filter-name").value.trim().toLowerCase();
        const stuckOnly = document.getElementById("filter-stuck").checked;
        const unfinished = document.getElementById("filter-unfinished").checked;
        const list = Array.from(rows.values());
        const key = {
          joined: (r) => r.learner.member,
          name: (r) => r.learner.name.toLowerCase(),
          progress: (r) => -r.passed.size,
          time: (r) => -timeOnTask(r.learner),
          stuck: (r) => (r.learner.stuck ? 0 : 1),
        }[by];
        list.sort((a, b) => {
          const x = key(a);
          const y = key(b);
          return x < y ? -1 : x > y ? 1 : a.learner.member - b.learner.member;
        });
        let shown = 0;
        const body = gridEl.querySelector("tbody");
        for (const r of list) {
          const visible =
            (!needle || r.learner.name.toLowerCase().includes(needle)) &&
            (!stuckOnly || r.learner.stuck) &&
            (!unfinished || !r.learner.finished_at);
          r.tr.hidden = !visible;
          if (visible) shown++;
          if (body.lastChild !== r.tr) body.appendChild(r.tr);
        }
        document.getElementById("grid-count").textContent = shown + " of " + rows.size + " learners shown";
      });
    }

    function updateEnds() {
      const ends = document.getElementById("class-ends");
      if (!ends) return;
      ends.textContent = data.class.state === "ended" ? "This class has ended." : "The class ends at " + clock(data.class.ends_at) + ".";
      document.getElementById("class-actions").classList.toggle("ended", data.class.state === "ended");
    }

    function showMessages() {
      const list = document.getElementById("messages");
      list.replaceChildren(...data.messages.slice(-3).map(([at, text]) => el("li", {}, clock(at) + " · sent to every learner: " + text)));
    }

    async function load() {
      const r = await fetch("/api/classes/" + id, { headers: { Accept: "application/json" } });
      if (!r.ok) return;
      data = await r.json();
      build();
    }

    function onEvent(e) {
      if (!data) return;
      if (e.type === "pass") {
        const row = rows.get(e.member);
        if (!row) return load();
        markPassed(row, e.task);
        row.progress.textContent = row.passed.size + "/" + columns.length;
        if (!row.learner.passed.includes(e.task)) row.learner.passed.push(e.task);
        order();
      } else if (e.type === "learner") {
        const l = e.learner;
        const row = rows.get(l.member);
        if (row) fill(row, l);
        else {
          data.learners.push(l);
          gridEl.querySelector("tbody").appendChild(makeRow(l));
        }
        order();
      } else if (e.type === "message") {
        data.messages.push([e.at, e.text]);
        showMessages();
      } else if (e.type === "extended") {
        data.class.ends_at = e.ends_at;
        updateEnds();
      } else {
        load(); // ended, lagged
      }
    }

    load();
    const events = new EventSource("/api/classes/" + id + "/events");
    events.onmessage = (m) => onEvent(JSON.parse(m.data));
    events.onerror = () => setTimeout(load, 2000);
    // Time on task advances by itself; stuck markers are pushed.
    setInterval(() => {
      if (!data) return;
      for (const r of rows.values()) r.time.textContent = minutes(timeOnTask(r.learner));
    }, 30000);

    for (const id of ["sort", "filter-name", "filter-stuck", "filter-unfinished"]) {
      document.getElementById(id).addEventListener("input", order);
    }
    document.getElementById("broadcast").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const input = ev.target.elements.text;
      const r = await post("/api/classes/" + id + "/broadcast", { text: input.value });
      if (r.ok) input.value = "";
      else alert(await errorSentence(r));
    });
    document.getElementById("extend").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const r = await post("/api/classes/" + id + "/extend", { minutes: Number(ev.target.elements.minutes.value) });
      if (!r.ok) alert(await errorSentence(r));
    });
    const qr = document.getElementById("qr");
    document.getElementById("show-qr").addEventListener("click", () => qr.showModal());
    window.docklabGrid = {
      get rows() {
        return rows.size;
      },
    };
  }

  // ---- one learner's terminal, for the instructor ---------------------------------------------

  const watchEl = document.getElementById("watch");
  if (watchEl && window.Terminal) watch(watchEl);

  function watch(watchEl) {
    const { session, csrf, member } = watchEl.dataset;
    const classId = watchEl.dataset.class;
    const term = new window.Terminal({ convertEol: false });
    const fit = new window.FitAddon.FitAddon();
    term.loadAddon(fit);
    term.open(watchEl);
    fit.fit();
    window.docklabTerm = term;
    const takeBtn = document.getElementById("takeover");
    const backBtn = document.getElementById("handback");
    const modeEl = document.getElementById("watch-mode");
    const message = document.getElementById("watch-message");
    const encoder = new TextEncoder();
    let ws = null;
    let writable = watchEl.dataset.takenOver === "true";

    function connect() {
      if (ws) {
        ws.onclose = null;
        ws.close();
      }
      const proto = location.protocol === "https:" ? "wss://" : "ws://";
      const mode = writable ? "interactive" : "view";
      const socket = new WebSocket(proto + location.host + "/api/sessions/" + session + "/terminal?mode=" + mode);
      socket.binaryType = "arraybuffer";
      socket.onmessage = (m) => {
        if (typeof m.data !== "string") term.write(new Uint8Array(m.data));
      };
      socket.onclose = () => {
        if (ws !== socket) return;
        ws = null;
        term.write("\r\n[docklab] the terminal closed\r\n");
      };
      ws = socket;
      modeEl.textContent = writable ? "(you are typing in this terminal)" : "(read-only)";
      takeBtn.hidden = writable;
      backBtn.hidden = !writable;
      term.options.disableStdin = !writable;
      if (writable) term.focus();
    }
    term.onData((d) => {
      if (writable && ws && ws.readyState === WebSocket.OPEN) ws.send(encoder.encode(d));
    });

    const post = (path) => fetch(path, { method: "POST", headers: { "X-CSRF-Token": csrf, Accept: "application/json" } });
    const base = "/api/classes/" + classId + "/learners/" + member;
    async function act(path, after) {
      message.hidden = true;
      const r = await post(base + path);
      if (!r.ok) {
        message.textContent = await errorSentence(r);
        message.hidden = false;
        return;
      }
      after();
    }
    takeBtn.addEventListener("click", () => act("/takeover", () => ((writable = true), connect())));
    backBtn.addEventListener("click", () => act("/handback", () => ((writable = false), connect())));
    document.getElementById("reset-learner").addEventListener("click", () => {
      if (confirm("Reset this learner's machine? Everything on it is lost.")) act("/reset", () => setTimeout(connect, 500));
    });
    connect();
  }

  // ---- the class bar on a learner's lesson page -----------------------------------------------

  const lab = document.getElementById("lab");
  let classId = null;
  try {
    classId = sessionStorage.getItem("docklab.class");
  } catch (_) {}
  if (lab && classId) learnerBar(lab, classId);

  async function learnerBar(lab, classId) {
    const r = await fetch("/api/classes/" + encodeURIComponent(classId) + "/me", { headers: { Accept: "application/json" } });
    if (!r.ok) return;
    let me = await r.json();
    const bar = el("section", { id: "class-bar", className: "class-bar" });
    bar.setAttribute("aria-live", "polite");
    lab.insertBefore(bar, lab.firstChild);
    let countdown = null;

    function render() {
      bar.replaceChildren();
      const line = el("p", { className: "class-line" });
      line.append(
        el("strong", {}, me.name),
        " · exercise " + (me.exercise_index + 1) + " of " + me.exercises.length,
        me.state === "ended" ? " · this class has ended" : " · ends at " + clock(me.ends_at),
      );
      bar.appendChild(line);
      if (me.taken_over) bar.appendChild(el("p", { className: "class-takeover" }, "Your instructor is typing in your terminal to help you."));
      for (const [at, text] of me.messages.slice(-3)) {
        bar.appendChild(el("p", { className: "class-message" }, clock(at) + " · your instructor: " + text));
      }
      const hasNext = me.exercise_index + 1 < me.exercises.length;
      if (me.state !== "ended" && hasNext) {
        const next = me.exercises[me.exercise_index + 1];
        const button = el("button", { type: "button", id: "class-next", className: "btn" }, "Next exercise: " + next.title + " →");
        button.addEventListener("click", goNext);
        const p = el("p", { className: "class-next" });
        if (me.done) p.appendChild(el("span", {}, "All tasks done. "));
        p.appendChild(button);
        if (countdown !== null) {
          const stay = el("button", { type: "button", className: "btn btn-quiet" }, "Stay here");
          stay.addEventListener("click", () => {
            clearInterval(countdownTimer);
            countdown = null;
            render();
          });
          p.append(" Moving on in " + countdown + " s. ", stay);
        }
        bar.appendChild(p);
      } else if (me.done && !hasNext) {
        bar.appendChild(el("p", { className: "class-done" }, "You finished the class's last exercise."));
      }
    }

    let countdownTimer = null;
    function startCountdown() {
      if (countdown !== null) return;
      countdown = 10;
      countdownTimer = setInterval(() => {
        countdown -= 1;
        if (countdown <= 0) {
          clearInterval(countdownTimer);
          goNext();
        } else render();
      }, 1000);
      render();
    }

    async function goNext() {
      clearInterval(countdownTimer);
      const button = document.getElementById("class-next");
      if (button) button.disabled = true;
      const r = await fetch("/api/classes/" + encodeURIComponent(classId) + "/me/next", {
        method: "POST",
        headers: { Accept: "application/json" },
      });
      if (!r.ok) {
        countdown = null;
        render();
        bar.appendChild(el("p", { className: "class-message" }, await errorSentence(r)));
        return;
      }
      const j = await r.json();
      try {
        sessionStorage.setItem("docklab.session." + j.exercise, JSON.stringify({ id: j.id, token: j.token, terminal: j.terminal }));
      } catch (_) {}
      location.assign(j.lesson_path);
    }

    render();
    const events = new EventSource("/api/classes/" + encodeURIComponent(classId) + "/me/events");
    events.onmessage = (m) => {
      const e = JSON.parse(m.data);
      if (e.type === "message") me.messages.push([e.at, e.text]);
      else if (e.type === "takeover") me.taken_over = e.active;
      else if (e.type === "extended") me.ends_at = e.ends_at;
      else if (e.type === "ended") me.state = "ended";
      else if (e.type === "done") {
        me.done = true;
        if (e.next) startCountdown();
      }
      render();
    };
  }
})();
