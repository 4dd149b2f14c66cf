// docklab live visuals: pictures of the learner's own session machine, drawn in the lesson next
// to the prose while the lab runs (a lesson places them with `live images|volumes|networks`).
//
// Wire contract (see the API doc): GET /api/sessions/{id}/scene when the terminal connects, then
// `{"type":"scene","scene":{…}}` frames on the terminal WebSocket whenever the engine's state
// changes. lab.js owns the session and the socket; it tells us through two DOM events:
// `docklab:session` (detail {id, token}, or null when the lab ends) and `docklab:control` (every
// control message). Everything shown comes from the learner's engine, so it is set as text only.
(function () {
  "use strict";

  const figures = Array.from(document.querySelectorAll("figure.live-visual[data-visual]"));
  if (!figures.length) return;

  let session = null;
  let scene = null;
  let pushes = 0; // scene frames received; a fetch started before the latest push is stale
  let retryTimer = null;
  let asking = false; // a fetch is in flight
  let selectedImage = null; // tag of the image whose layers are shown
  let pickedImage = false; // the learner clicked one; until then the newest build is shown

  // ---- small helpers ------------------------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function append(parent) {
    for (let i = 1; i < arguments.length; i++) {
      const child = arguments[i];
      if (child) parent.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return parent;
  }

  function bytes(n) {
    n = Number(n) || 0;
    if (n < 1000) return n + " B";
    const units = ["kB", "MB", "GB"];
    let value = n;
    let unit = "B";
    for (const u of units) {
      if (value < 1000) break;
      value /= 1000;
      unit = u;
    }
    return (value < 10 ? value.toFixed(1) : Math.round(value)) + " " + unit;
  }

  function home(path) {
    return String(path || "").replace(/^\/root(?=\/|$)/, "~");
  }

  function stateDot(state) {
    const dot = el("span", "viz-dot");
    dot.dataset.state = state === "running" ? "running" : state === "restarting" || state === "paused" ? "busy" : "stopped";
    dot.title = state;
    return dot;
  }

  function empty(text, hint) {
    const box = el("div", "viz-empty");
    append(box, el("p", null, text));
    if (hint) append(box, el("code", null, hint));
    return box;
  }

  // ---- session and data ---------------------------------------------------------------------

  function setWaiting(text) {
    for (const figure of figures) {
      figure.dataset.state = "waiting";
      const body = figure.querySelector(".live-visual-body");
      const note = body.querySelector(".live-visual-empty");
      if (note && text) note.textContent = text;
    }
  }

  async function fetchScene() {
    clearTimeout(retryTimer);
    if (!session) return;
    const asked = session;
    const pushesBefore = pushes;
    asking = true;
    try {
      const response = await fetch("/api/sessions/" + encodeURIComponent(asked.id) + "/scene", {
        headers: { Authorization: "Bearer " + asked.token, Accept: "application/json" },
      });
      if (session !== asked) return;
      if (!response.ok) {
        // Starting, or the engine is restarting: ask again shortly.
        if (response.status === 409 || response.status === 503) retryTimer = setTimeout(fetchScene, 2000);
        return;
      }
      const body = await response.json();
      if (session === asked && pushes === pushesBefore) show(body);
    } catch (_) {
      // Chromium aborts requests in flight when the host's interfaces change (ERR_NETWORK_CHANGED).
      if (session === asked) retryTimer = setTimeout(fetchScene, 3000);
    } finally {
      asking = false;
    }
  }

  function show(next) {
    if (!next || typeof next !== "object") return;
    scene = next;
    for (const figure of figures) {
      const body = figure.querySelector(".live-visual-body");
      const draw = DRAW[figure.dataset.visual];
      if (!draw) continue;
      const fresh = el("div", "viz");
      draw(fresh, scene);
      body.replaceChildren(fresh);
      figure.dataset.state = "live";
    }
  }

  document.addEventListener("docklab:session", function (event) {
    session = event.detail && event.detail.id ? event.detail : null;
    if (session) {
      fetchScene();
    } else {
      clearTimeout(retryTimer);
      scene = null;
      for (const figure of figures) {
        const body = figure.querySelector(".live-visual-body");
        body.replaceChildren(el("p", "live-visual-empty", "The lab has ended. Start it again to see your machine here."));
        figure.dataset.state = "waiting";
      }
    }
  });

  document.addEventListener("docklab:control", function (event) {
    const msg = event.detail;
    if (msg && msg.type === "scene" && msg.scene) {
      pushes += 1;
      show(msg.scene);
    } else if (session && !scene && !asking) {
      // Nothing drawn yet (the first fetch failed): any sign of life from the session asks again.
      fetchScene();
    }
  });

  // ---- day 26: images by size, and the selected image's layers ------------------------------

  function drawImages(root, s) {
    const images = Array.isArray(s.images) ? s.images : [];
    if (!images.length) {
      append(root, empty("No tagged images in your machine yet.", "docker pull busybox"));
      return;
    }
    const largest = Math.max.apply(null, images.map((i) => Number(i.size) || 0)) || 1;
    if (!pickedImage || !images.some((i) => i.tags[0] === selectedImage)) {
      // The newest image built in the machine, else the largest.
      const built = images.filter((i) => !i.pulled).sort((a, b) => b.created - a.created);
      selectedImage = (built[0] || images[0]).tags[0];
    }

    const legend = el("div", "viz-legend");
    append(legend, el("span", "viz-key viz-key-built", "built in your machine"), el("span", "viz-key viz-key-pulled", "pulled"));
    append(root, legend);

    const list = el("div", "viz-bars");
    list.setAttribute("role", "list");
    for (const image of images) {
      const tag = image.tags[0];
      const row = el("button", "viz-bar-row");
      row.type = "button";
      row.dataset.image = tag;
      row.dataset.origin = image.pulled ? "pulled" : "built";
      row.setAttribute("role", "listitem");
      row.setAttribute("aria-pressed", tag === selectedImage ? "true" : "false");
      row.title = image.tags.join(", ") + ": show its layers";
      const label = el("span", "viz-bar-label");
      append(label, el("span", "viz-bar-name", tag));
      const how = image.base ? "on " + image.base : image.pulled ? "" : "FROM scratch or base removed";
      if (how) append(label, el("span", "viz-bar-base", how));
      const track = el("span", "viz-bar-track");
      const bar = el("span", "viz-bar");
      bar.style.width = Math.max(0.6, (100 * (Number(image.size) || 0)) / largest).toFixed(2) + "%";
      append(track, bar);
      append(row, label, track, el("span", "viz-bar-size", bytes(image.size)));
      row.addEventListener("click", function () {
        selectedImage = tag;
        pickedImage = true;
        show(scene);
      });
      append(list, row);
    }
    append(root, list);

    const image = images.find((i) => i.tags[0] === selectedImage);
    if (!image) return;
    const layers = el("div", "viz-layers");
    const head = el("p", "viz-subhead");
    append(head, "Layers of ", el("code", null, selectedImage), " (" + bytes(image.size) + ", newest first)");
    append(layers, head);
    const table = el("table", "viz-layer-table");
    const tbody = el("tbody");
    const layerMax = Math.max.apply(null, image.layers.map((l) => Number(l.size) || 0).concat([1]));
    for (const layer of image.layers) {
      const tr = el("tr");
      tr.dataset.empty = layer.size > 0 ? "false" : "true";
      const what = el("td", "viz-layer-what");
      append(what, el("code", null, layer.instruction || "(no instruction recorded)"));
      what.title = layer.instruction || "";
      const size = el("td", "viz-layer-size");
      const mini = el("span", "viz-layer-bar");
      mini.style.width = layer.size > 0 ? Math.max(2, (60 * layer.size) / layerMax).toFixed(0) + "px" : "0";
      append(size, mini, el("span", null, layer.size > 0 ? bytes(layer.size) : "0 B"));
      append(tr, what, size);
      append(tbody, tr);
    }
    append(table, tbody);
    append(layers, table);
    append(root, layers);
  }

  // ---- day 27: volumes, the containers that mount them, bind mounts -------------------------

  function drawVolumes(root, s) {
    const volumes = Array.isArray(s.volumes) ? s.volumes : [];
    const containers = Array.isArray(s.containers) ? s.containers : [];
    const byName = new Map(containers.map((c) => [c.name, c]));

    if (!volumes.length) {
      append(root, empty("No volumes in your machine yet.", "docker volume create app-data"));
    } else {
      const grid = el("div", "viz-volumes");
      for (const volume of volumes) {
        const card = el("div", "viz-volume");
        card.dataset.volume = volume.name;
        card.dataset.anonymous = volume.anonymous ? "true" : "false";
        const head = el("div", "viz-volume-head");
        append(head, el("span", "viz-volume-icon"));
        append(head, el("span", "viz-volume-name", volume.anonymous ? volume.name.slice(0, 12) + "…" : volume.name));
        if (volume.anonymous) append(head, el("span", "viz-badge", "anonymous"));
        card.title = volume.name;
        append(card, head);
        if (!volume.used_by.length) {
          const unused = el("p", "viz-volume-unused", "No container holds it: ");
          append(unused, el("code", null, "docker volume prune"), " would delete it.");
          append(card, unused);
        } else {
          const ul = el("ul", "viz-mounts");
          for (const name of volume.used_by) {
            const c = byName.get(name);
            const li = el("li");
            li.dataset.container = name;
            append(li, stateDot(c ? c.state : ""), el("span", "viz-mount-container", name));
            const mount = c && c.mounts.find((m) => m.kind === "volume" && m.source === volume.name);
            if (mount) append(li, el("span", "viz-arrow", "at"), el("code", null, mount.destination));
            if (mount && mount.read_only) append(li, el("span", "viz-badge", "read-only"));
            append(li, el("span", "viz-mount-state", c ? c.state : ""));
            append(ul, li);
          }
          append(card, ul);
        }
        append(grid, card);
      }
      append(root, grid);
    }

    const binds = [];
    for (const c of containers) {
      for (const m of c.mounts) if (m.kind === "bind") binds.push([c, m]);
    }
    if (binds.length) {
      append(root, el("p", "viz-subhead", "Bind mounts: a folder of your machine, seen inside a container"));
      const ul = el("ul", "viz-binds");
      for (const [c, m] of binds) {
        const li = el("li");
        li.dataset.container = c.name;
        append(li, el("code", "viz-bind-source", home(m.source)), el("span", "viz-arrow", "→"));
        append(li, stateDot(c.state), el("span", "viz-mount-container", c.name), el("code", null, m.destination));
        if (m.read_only) append(li, el("span", "viz-badge", "read-only"));
        append(ul, li);
      }
      append(root, ul);
    }
  }

  // ---- day 28: networks, the containers on each, who reaches whom ---------------------------

  const KIND = {
    default: { label: "default bridge", note: "by IP only, no DNS" },
    user_defined: { label: "user-defined", note: "DNS by container name" },
    host: { label: "host", note: "the machine's own network" },
    none: { label: "none", note: "only lo: no network" },
  };

  function drawNetworks(root, s) {
    const networks = Array.isArray(s.networks) ? s.networks : [];
    const containers = Array.isArray(s.containers) ? s.containers : [];
    const byName = new Map(containers.map((c) => [c.name, c]));
    const used = networks.filter((n) => n.containers.length);
    const unused = networks.filter((n) => !n.containers.length);

    if (!used.length) {
      append(root, empty("No containers on any network yet.", "docker run -d --name web --network my-net nginx"));
    } else {
      const grid = el("div", "viz-networks");
      for (const network of used) {
        const box = el("section", "viz-network");
        box.dataset.network = network.name;
        box.dataset.kind = network.kind;
        const head = el("div", "viz-network-head");
        append(head, el("span", "viz-network-name", network.name));
        append(head, el("span", "viz-badge", (KIND[network.kind] || KIND.user_defined).note));
        append(box, head);
        const meta = [(KIND[network.kind] || KIND.user_defined).label];
        if (network.subnet) meta.push(network.subnet);
        if (network.internal) meta.push("internal");
        append(box, el("p", "viz-network-meta", meta.join(" · ")));
        const ul = el("ul", "viz-chips");
        for (const name of network.containers) {
          const c = byName.get(name);
          const li = el("li", "viz-chip");
          li.dataset.container = name;
          append(li, stateDot(c ? c.state : ""), el("span", "viz-chip-name", name));
          const at = c && c.networks.find((a) => a.network === network.name);
          if (at && at.ip) append(li, el("span", "viz-chip-ip", at.ip));
          const others = c ? c.networks.filter((a) => a.network !== network.name).map((a) => a.network) : [];
          if (others.length) li.title = name + " is also on " + others.join(", ");
          if (others.length) append(li, el("span", "viz-chip-also", "+" + others.length));
          append(ul, li);
        }
        append(box, ul);
        append(grid, box);
      }
      append(root, grid);
    }
    if (unused.length) {
      const p = el("p", "viz-network-unused", "No containers on: ");
      append(p, unused.map((n) => n.name).join(", "));
      append(root, p);
    }

    const running = containers.filter((c) => c.state === "running");
    if (running.length < 2) {
      if (used.length) append(root, el("p", "viz-note", "Run two or more containers to see who can reach whom."));
      return;
    }
    const reach = new Map();
    for (const r of s.reach || []) reach.set(r.from + "\u0000" + r.to, r);
    append(root, el("p", "viz-subhead", "Can the container on the left reach the one above?"));
    const wrap = el("div", "viz-matrix-wrap");
    const table = el("table", "viz-matrix");
    const thead = el("thead");
    const top = el("tr");
    append(top, el("th", "viz-corner", "from \\ to"));
    for (const to of running) append(top, el("th", null, to.name));
    append(thead, top);
    const tbody = el("tbody");
    for (const from of running) {
      const tr = el("tr");
      append(tr, el("th", null, from.name));
      for (const to of running) {
        const td = el("td");
        td.dataset.from = from.name;
        td.dataset.to = to.name;
        if (from.name === to.name) {
          td.dataset.reach = "self";
          td.textContent = "·";
        } else {
          const r = reach.get(from.name + "\u0000" + to.name);
          td.dataset.reach = r ? r.by : "no";
          td.textContent = r ? (r.by === "name" ? "by name" : r.by === "ip" ? "IP only" : "via host") : "no";
          td.title = r
            ? r.by === "name"
              ? "on " + r.network + ": by name or by IP"
              : r.by === "ip"
                ? "on the default bridge: by IP, names do not resolve"
                : "through the machine's own network stack, by IP"
            : "no shared network: neither the name nor the address works";
        }
        append(tr, td);
      }
      append(tbody, tr);
    }
    append(table, thead, tbody);
    append(wrap, table);
    append(root, wrap);
  }

  const DRAW = { images: drawImages, volumes: drawVolumes, networks: drawNetworks };

  setWaiting(null);
})();
