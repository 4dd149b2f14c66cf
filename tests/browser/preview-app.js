// A learner's app for the port-preview security tests (tests/browser/preview-security.test.mjs and
// tests/tests/preview_security.rs). It runs inside a session machine under node:18 (plain Node,
// no packages: the machine is offline), published with `-p 8080:8080`, and serves:
//   /            a hostile page: tries docklab's cookies, storage, APIs, a service worker, a popup
//                and a frame of docklab, and writes what it got into <pre id="results">
//   /app/        an ordinary app: a script, a relative fetch, a JSON POST, a WebSocket echo
//   …/echo       the request as the app received it (method, url, headers, body), as JSON
//   /evil-headers, /sw.js, /redirect?to=…, /login-redirect   answers with hostile headers
// Every test target is a path of this app or of the docklab server that proxies it: nothing here
// reaches another address.
const http = require("http");
const crypto = require("crypto");

const HOSTILE_PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>hostile</title></head>
<body><h1>Nothing to see</h1><pre id="results"></pre>
<script>
(async () => {
  const results = {};
  const attempt = async (name, fn) => {
    try {
      results[name] = { got: String(await fn()).slice(0, 300) };
    } catch (err) {
      results[name] = { refused: String(err && err.name) + ": " + String(err && err.message).slice(0, 200) };
    }
  };
  // The docklab root, whatever prefix the preview lives under.
  const root = location.origin === "null" ? location.href.replace(/^(https?:\\/\\/[^/]+).*$/, "$1") : location.origin;
  await attempt("origin", () => { if (self.origin === "null") throw new Error("opaque origin"); return self.origin; });
  await attempt("read document.cookie", () => document.cookie);
  await attempt("write document.cookie", () => { document.cookie = "planted_js=1; path=/"; return document.cookie; });
  await attempt("read localStorage", () => JSON.stringify(Object.keys(localStorage)));
  await attempt("read sessionStorage", () => JSON.stringify(Object.keys(sessionStorage)));
  await attempt("read indexedDB", () => new Promise((ok, fail) => {
    const r = indexedDB.open("docklab-probe"); r.onsuccess = () => ok("opened"); r.onerror = () => fail(r.error);
  }));
  await attempt("register service worker", async () => {
    const reg = await navigator.serviceWorker.register(new URL("sw.js", location.href).href, { scope: root + "/" });
    return "registered " + reg.scope;
  });
  for (const api of ["/api/instructor/me", "/api/classes", "/instructor"]) {
    await attempt("fetch " + api, async () => {
      const r = await fetch(root + api, { credentials: "include" });
      return r.status + " " + (await r.text());
    });
  }
  // As an instructor's page would: the CSRF token from /api/instructor/me, then a state change.
  await attempt("post /api/classes", async () => {
    const me = await (await fetch(root + "/api/instructor/me", { credentials: "include" })).json();
    const r = await fetch(root + "/api/classes", {
      method: "POST", credentials: "include",
      headers: { "content-type": "application/json", "x-csrf-token": me.csrf },
      body: JSON.stringify({ name: "hijacked", exercises: ["day-24/lifecycle"], seats: 1 }),
    });
    return r.status + " " + (await r.text());
  });
  await attempt("hostile headers answer", async () => {
    const r = await fetch("evil-headers");
    return r.status + " " + (await r.text());
  });
  await attempt("frame docklab", () => new Promise((ok, fail) => {
    const f = document.createElement("iframe");
    f.src = root + "/instructor";
    f.onload = () => { try { ok(f.contentDocument.body.innerText); } catch (e) { fail(e); } };
    document.body.appendChild(f);
    setTimeout(() => fail(new Error("no frame after 5 s")), 5000);
  }));
  await attempt("popup of docklab", () => new Promise((ok, fail) => {
    const w = window.open(root + "/instructor");
    if (!w) return fail(new Error("no window"));
    setTimeout(() => { try { ok(w.document.body.innerText); } catch (e) { fail(e); } finally { try { w.close(); } catch (_) {} } }, 2000);
  }));
  document.getElementById("results").textContent = JSON.stringify(results);
  document.body.dataset.done = "1";
})();
</script></body></html>
`;

const APP_PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>my app</title><script src="app.js"></script></head>
<body><h1>My app</h1><pre id="results"></pre>
<script>
(async () => {
  const results = { script: window.appJsLoaded === true ? "ok" : "app.js did not run" };
  const check = async (name, fn) => { try { results[name] = await fn(); } catch (e) { results[name] = "failed: " + e; } };
  await check("fetch", async () => (await (await fetch("data.json")).json()).hello === "preview" ? "ok" : "wrong data");
  await check("post", async () => {
    const r = await fetch("echo", { method: "POST", headers: { "content-type": "application/json" }, body: '{"n":42}' });
    const echo = await r.json();
    return echo.method === "POST" && echo.body === '{"n":42}' ? "ok" : "wrong echo " + JSON.stringify(echo);
  });
  await check("websocket", () => new Promise((ok, fail) => {
    const ws = new WebSocket(new URL("ws", location.href).href.replace(/^http/, "ws"));
    ws.onopen = () => ws.send("ping");
    ws.onmessage = (m) => { ok(m.data === "echo from /app/ws: ping" ? "ok" : "wrong echo " + m.data); ws.close(); };
    ws.onerror = () => fail(new Error("websocket error"));
    setTimeout(() => fail(new Error("no echo after 10 s")), 10000);
  }));
  document.getElementById("results").textContent = JSON.stringify(results);
  document.body.dataset.done = "1";
})();
</script></body></html>
`;

function send(res, status, headers, body) {
  res.writeHead(status, headers);
  res.end(body);
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://app.invalid");
  let body = "";
  req.on("data", (d) => (body += d));
  req.on("end", () => {
    if (url.pathname.endsWith("/echo")) {
      return send(res, 200, { "content-type": "application/json" }, JSON.stringify({ method: req.method, url: req.url, headers: req.headers, body }));
    }
    switch (url.pathname) {
      case "/":
        return send(res, 200, { "content-type": "text/html; charset=utf-8" }, HOSTILE_PAGE);
      case "/app/":
        return send(res, 200, { "content-type": "text/html; charset=utf-8" }, APP_PAGE);
      case "/app/app.js":
        return send(res, 200, { "content-type": "text/javascript" }, "window.appJsLoaded = true;\n");
      case "/app/data.json":
        return send(res, 200, { "content-type": "application/json" }, '{"hello":"preview"}');
      case "/evil-headers":
        res.setHeader("Set-Cookie", ["docklab_instructor=planted; Path=/", "planted_header=1; Path=/"]);
        res.setHeader("Clear-Site-Data", '"cookies", "storage", "cache"');
        res.setHeader("Service-Worker-Allowed", "/");
        res.setHeader("Refresh", "0; url=http://example.invalid/");
        res.setHeader("Strict-Transport-Security", "max-age=31536000; includeSubDomains");
        res.setHeader("NEL", '{"report_to":"app","max_age":86400}');
        res.setHeader("Report-To", '{"group":"app","max_age":86400,"endpoints":[{"url":"http://example.invalid/r"}]}');
        res.setHeader("Referrer-Policy", "unsafe-url");
        res.setHeader("Access-Control-Allow-Credentials", "true");
        return send(res, 200, { "content-type": "text/plain", "x-app": "kept" }, "hostile headers sent\n");
      case "/sw.js":
        return send(res, 200, { "content-type": "text/javascript", "service-worker-allowed": "/" },
          "self.addEventListener('fetch', (e) => e.respondWith(new Response('owned by the learner')));\n");
      case "/redirect":
        return send(res, 302, { location: url.searchParams.get("to") || "/" }, "");
      case "/login-redirect":
        return send(res, 302, { location: "/app/" }, "");
      default:
        return send(res, 404, { "content-type": "text/plain" }, "not found\n");
    }
  });
});

// WebSocket echo on /app/ws (RFC 6455, text frames under 126 bytes: all the test sends).
server.on("upgrade", (req, sock) => {
  const accept = crypto.createHash("sha1").update(req.headers["sec-websocket-key"] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest("base64");
  sock.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept + "\r\n\r\n");
  let buf = Buffer.alloc(0);
  sock.on("data", (d) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 6) {
      const op = buf[0] & 15;
      const len = buf[1] & 127;
      if (buf.length < 6 + len) return;
      const mask = buf.subarray(2, 6);
      const text = Buffer.alloc(len);
      for (let i = 0; i < len; i++) text[i] = buf[6 + i] ^ mask[i % 4];
      buf = buf.subarray(6 + len);
      if (op === 8) return sock.end();
      const out = Buffer.from("echo from " + req.url + ": " + text.toString());
      sock.write(Buffer.concat([Buffer.from([0x81, out.length]), out]));
    }
  });
  sock.on("error", () => {});
});

server.listen(8080);
