// docklab classroom: the instructor's live grid (pushed over server-sent events) and the
// read-only terminal of one learner.
(function () {
  "use strict";
  const gridEl = document.getElementById("grid");
  if (gridEl) {
    const id = gridEl.dataset.class;
    let data = null;
    const el = (tag, attrs, text) => {
      const e = document.createElement(tag);
      Object.assign(e, attrs || {});
      if (text !== undefined) e.textContent = text;
      return e;
    };
    const minutes = (s) => Math.floor(s / 60) + " min";
    function render() {
      const table = el("table", { className: "class-grid" });
      const head = table.createTHead().insertRow();
      head.appendChild(el("th", {}, "Learner"));
      head.appendChild(el("th", {}, "Time"));
      for (const t of data.tasks) head.appendChild(el("th", { title: t.key }, t.title));
      const body = table.createTBody();
      for (const l of data.learners) {
        const row = body.insertRow();
        row.dataset.member = l.member;
        const name = el("td", { className: l.stuck ? "stuck" : "" });
        if (l.session) {
          name.appendChild(el("a", { href: "/classes/" + id + "/watch/" + l.member, target: "_blank" }, l.name));
        } else {
          name.textContent = l.name;
        }
        if (l.stuck) name.appendChild(el("span", { className: "stuck-marker", title: "idle for a while" }, " stuck"));
        row.appendChild(name);
        row.appendChild(el("td", {}, minutes(l.time_on_task_s)));
        for (const t of data.tasks) {
          const passed = l.passed.includes(t.key);
          row.appendChild(el("td", { className: passed ? "cell passed" : "cell" }, passed ? "✓" : ""));
        }
      }
      gridEl.replaceChildren(el("p", {}, data.class.state === "ended" ? "This class has ended." : ""), table);
    }
    async function load() {
      const r = await fetch("/api/classes/" + id, { headers: { Accept: "application/json" } });
      if (r.ok) {
        data = await r.json();
        render();
      }
    }
    load();
    const events = new EventSource("/api/classes/" + id + "/events");
    events.onmessage = (m) => {
      const e = JSON.parse(m.data);
      if (e.type === "pass" && data) {
        const l = data.learners.find((x) => x.member === e.member);
        if (l && !l.passed.includes(e.task)) {
          l.passed.push(e.task);
          render();
          return;
        }
      }
      load();
    };
    setInterval(load, 60000); // time on task and stuck markers
  }

  const watchEl = document.getElementById("watch");
  if (watchEl && window.Terminal) {
    const term = new window.Terminal({ disableStdin: true, convertEol: false });
    const fit = new window.FitAddon.FitAddon();
    term.loadAddon(fit);
    term.open(watchEl);
    fit.fit();
    const proto = location.protocol === "https:" ? "wss://" : "ws://";
    const ws = new WebSocket(proto + location.host + "/api/sessions/" + watchEl.dataset.session + "/terminal?mode=view");
    ws.binaryType = "arraybuffer";
    ws.onmessage = (m) => {
      if (typeof m.data !== "string") term.write(new Uint8Array(m.data));
    };
    ws.onclose = () => term.write("\r\n[docklab] the terminal closed\r\n");
  }
})();
