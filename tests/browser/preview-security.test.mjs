// The port preview in a real browser, against a hostile app (SECURITY-TESTS.md case 24). A learner
// runs an app in their machine (tests/browser/preview-app.js under node:18, `-p 8080:8080`); the
// lab shows the published port as a link; an instructor, logged in, opens that link. The page
// tries what issue 12 found possible: read docklab's cookies and storage, read the instructor
// API and use its CSRF token, register a service worker for docklab, plant and clear cookies with
// the app's own answer headers, frame or open docklab and read it. Each must fail, and the
// instructor's login, cookies and classes must be as they were. The same preview still serves an
// ordinary app: its script, a relative fetch, a JSON POST and a WebSocket all work.
//
// Run (as root, node image built, server built):
//   DOCKLAB_BIN=target/debug/docklab DOCKLAB_STATE_DIR=/var/lib/docklab ARTIFACTS=/tmp/artifacts \
//     node --test --test-concurrency=1 tests/browser/preview-security.test.mjs
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import * as lab from "./lab.mjs";
import { startServer } from "./server.mjs";

const VIEWPORT = { width: 1400, height: 900 };
const LESSON = "day-24";
const PASSWORD = "a long preview-test password";
const APP = readFileSync(new URL("./preview-app.js", import.meta.url), "utf8");

// What the hostile page tries; every one must be refused.
const ATTACKS = [
  "origin",
  "read document.cookie",
  "write document.cookie",
  "read localStorage",
  "read sessionStorage",
  "read indexedDB",
  "register service worker",
  "fetch /api/instructor/me",
  "fetch /api/classes",
  "fetch /instructor",
  "post /api/classes",
  "frame docklab",
  "popup of docklab",
];

describe("a hostile app behind the port preview", { timeout: 10 * 60_000 }, () => {
  let server;
  let browser;
  const sessions = [];
  const instructor = `preview-teacher-${process.pid}-${Date.now().toString(36)}`;

  before(async () => {
    const add = spawnSync(process.env.DOCKLAB_BIN, ["instructor", "add", instructor, "--state-dir", process.env.DOCKLAB_STATE_DIR], {
      input: PASSWORD + "\n",
      encoding: "utf8",
    });
    assert.equal(add.status, 0, `docklab instructor add: ${add.stderr}`);
    server = await startServer({ name: "server-preview-security" });
    browser = await lab.launchChromium();
  });

  after(() => lab.shutDown(browser, server, () => lab.deleteSessions(server, sessions)));

  async function exec(session, script) {
    const response = await fetch(`${server.url}/api/sessions/${session.id}/exec`, {
      method: "POST",
      headers: { Authorization: `Bearer ${session.token}`, "content-type": "application/json" },
      body: JSON.stringify({ cmd: ["sh", "-c", script], timeout_s: 120 }),
      signal: AbortSignal.timeout(180_000),
    });
    return response.json();
  }

  /** The JSON a preview page writes into #results once it is done. */
  async function results(page) {
    await page.waitForSelector("body[data-done]", { timeout: 60_000, state: "attached" });
    return JSON.parse(await page.textContent("#results"));
  }

  test("the app can touch nothing of docklab's, and an ordinary app still works", { timeout: 8 * 60_000 }, async (t) => {
    const learner = await lab.openPage(browser, t, { viewport: VIEWPORT, requestFailed: false });
    const teacher = await lab.openPage(browser, t, { viewport: VIEWPORT, requestFailed: false, terminal: false });
    await lab.withDiagnostics({ page: learner.page, problems: learner.problems, server, name: "preview-security" }, async () => {
      // The learner starts a lab and, from it, an app publishing port 8080.
      await learner.page.goto(`${server.url}/lessons/${LESSON}`);
      const [created] = await Promise.all([
        learner.page.waitForResponse((r) => r.request().method() === "POST" && new URL(r.url()).pathname === "/api/sessions", { timeout: 60_000 }),
        learner.page.getByRole("button", { name: "Start lab" }).click(),
      ]);
      const session = await created.json();
      assert.equal(created.status(), 201, JSON.stringify(session));
      sessions.push(session);
      await learner.page.waitForSelector('#lab-status[data-state="ready"]', { timeout: 60_000 });
      const script =
        `mkdir -p /root/app && cat > /root/app/server.js <<'JS'\n${APP}\nJS\n` +
        "docker run -d --name app -p 8080:8080 -v /root/app:/app node:18 node /app/server.js >/dev/null && " +
        "for i in $(seq 100); do curl -fs http://127.0.0.1:8080/app/data.json && break; sleep 0.2; done";
      const out = await exec(session, script);
      assert.equal(out.stdout, '{"hello":"preview"}', JSON.stringify(out));

      // The lab links the port to the capability URL: no token in it.
      const link = learner.page.locator("#lab-ports a.lab-port").first();
      await link.waitFor({ timeout: 60_000 });
      const href = await link.getAttribute("href");
      assert.match(href, new RegExp(`^/preview/${session.id}/[0-9a-f]{32}/8080/$`));
      assert.ok(!href.includes(session.token), href);

      // The learner's own ordinary app, through the link: script, fetch, POST, WebSocket.
      const [preview] = await Promise.all([learner.context.waitForEvent("page"), link.click()]);
      await preview.waitForLoadState();
      assert.equal(new URL(preview.url()).pathname, href);
      await preview.goto(`${server.url}${href}app/`);
      const app = await results(preview);
      assert.deepEqual(app, { script: "ok", fetch: "ok", post: "ok", websocket: "ok" }, JSON.stringify(app));
      await preview.close();

      // The instructor logs in, then opens the learner's link.
      const page = teacher.page;
      await page.goto(`${server.url}/instructor/login`);
      await page.fill('input[name="name"]', instructor);
      await page.fill('input[name="password"]', PASSWORD);
      await Promise.all([page.waitForURL(`${server.url}/instructor`), page.click("button")]);
      const cookiesBefore = await teacher.context.cookies();
      const login = cookiesBefore.find((c) => c.name === "docklab_instructor");
      assert.ok(login, "logged in");
      const classesBefore = await (await page.request.get(`${server.url}/api/classes`)).text();

      const response = await page.goto(`${server.url}${href}`);
      assert.equal(response.status(), 200);
      const attacks = await results(page);
      const report = JSON.stringify(attacks, null, 1);
      writeFileSync(path.join(lab.ARTIFACTS, "preview-security-attacks.json"), report + "\n");
      for (const name of ATTACKS) {
        assert.ok(attacks[name], `${name} was not tried: ${report}`);
        assert.ok(attacks[name].refused && !("got" in attacks[name]), `${name} succeeded: ${report}`);
      }
      // The app's own hostile answer did arrive, without its headers' effects.
      assert.equal(attacks["hostile headers answer"]?.got, "200 hostile headers sent\n", report);
      await page.screenshot({ path: path.join(lab.ARTIFACTS, "preview-security-hostile.png") });

      // Nothing of the instructor's changed: same login cookie, nothing planted, nothing cleared,
      // no service worker for docklab, no class created.
      const cookiesAfter = await teacher.context.cookies();
      assert.deepEqual(
        cookiesAfter.map((c) => `${c.name}=${c.value}`).sort(),
        cookiesBefore.map((c) => `${c.name}=${c.value}`).sort(),
        "cookies changed",
      );
      await page.goto(`${server.url}/instructor`);
      assert.equal(new URL(page.url()).pathname, "/instructor", "still logged in");
      const workers = await page.evaluate(async () => (await navigator.serviceWorker.getRegistrations()).map((r) => r.scope));
      assert.deepEqual(workers, [], "a service worker was registered for docklab");
      assert.equal(await (await page.request.get(`${server.url}/api/classes`)).text(), classesBefore, "the classes changed");
    });
  });
});
