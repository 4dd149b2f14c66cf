// Walking skeleton: the real docklab server, a real session machine with its own dockerd, and
// Debian's chromium driven by playwright-core. A learner opens a lesson, starts the lab, runs a
// container in the browser terminal, resizes the window, and ends the lab.
//
// Run (as root, node image built, server built):
//   DOCKLAB_BIN=target/debug/docklab DOCKLAB_STATE_DIR=/var/lib/docklab ARTIFACTS=/tmp/artifacts \
//     node --test --test-concurrency=1 tests/browser/
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import * as lab from "./lab.mjs";
import { ARTIFACTS, terminalText } from "./lab.mjs";
import { startServer } from "./server.mjs";

const VIEWPORT = { width: 1400, height: 900 };
const SMALL_VIEWPORT = { width: 1100, height: 640 };

const LESSON = "day-24";
const EXERCISE = "day-24/lifecycle";

/** Types a command into the focused terminal the way a person would, then Enter. */
async function typeCommand(page, command) {
  await page.click("#terminal");
  await page.keyboard.type(command, { delay: 15 });
  await page.keyboard.press("Enter");
}

/** Runs `stty size` in the terminal and returns {rows, cols} as the shell's PTY sees them. */
async function sttySize(page) {
  await typeCommand(page, "stty size");
  const handle = await page.waitForFunction(
    () => {
      const lines = window.__docklabLines();
      let cmd = -1;
      for (let i = lines.length - 1; i >= 0; i--) {
        if (lines[i].includes("stty size")) {
          cmd = i;
          break;
        }
      }
      if (cmd < 0) return null;
      for (let i = cmd + 1; i < lines.length; i++) {
        const m = /^\s*(\d+) (\d+)\s*$/.exec(lines[i]);
        if (m) return { rows: Number(m[1]), cols: Number(m[2]) };
      }
      return null;
    },
    null,
    { timeout: 30_000, polling: 100 },
  );
  return handle.jsonValue();
}

describe("docklab in a real browser", { timeout: 10 * 60_000 }, () => {
  let server;
  let browser;
  const sessions = []; // {id, token} of every session a test created, deleted in `after`

  before(async () => {
    server = await startServer({ name: "server-walking-skeleton" });
    browser = await lab.launchChromium();
  });

  after(() => lab.shutDown(browser, server, () => lab.deleteSessions(server, sessions)));

  /** A fresh context and page, with console errors collected for failure messages. */
  function openPage(t) {
    return lab.openPage(browser, t, { viewport: VIEWPORT });
  }

  /** Runs `body`; on failure saves a screenshot and adds the terminal text, page problems and server log. */
  function withDiagnostics(page, problems, name, body) {
    const labStatus = (page) =>
      page
        .locator("#lab-status")
        .evaluate((el) => `${el.dataset.state}: ${el.textContent}`)
        .catch(() => "(no #lab-status)");
    const sections = [
      ["lab status", labStatus],
      ["terminal", terminalText],
    ];
    return lab.withDiagnostics({ page, problems, server, name, sections }, body);
  }

  test("start a lab, run busybox in the terminal, resize, end the lab", { timeout: 6 * 60_000 }, async (t) => {
    const { page, problems } = await openPage(t);
    await withDiagnostics(page, problems, "walking-skeleton", async () => {
      const response = await page.goto(`${server.url}/lessons/${LESSON}`);
      assert.equal(response.status(), 200, "the lesson page loads");
      assert.equal(await page.locator("#lab").getAttribute("data-exercise"), EXERCISE);
      assert.equal(await page.locator("#lab-status").getAttribute("data-state"), "idle");

      // Start the lab; the POST's answer carries the session's id and token.
      const startButton = page.getByRole("button", { name: "Start lab" });
      const [created] = await Promise.all([
        page.waitForResponse(
          (r) => r.request().method() === "POST" && new URL(r.url()).pathname === "/api/sessions",
          { timeout: 60_000 },
        ),
        startButton.click(),
      ]);
      const createdBody = await created.json().catch(() => null);
      assert.equal(created.status(), 201, `POST /api/sessions answers 201 (got ${JSON.stringify(createdBody)})`);
      const { id, token, terminal } = createdBody;
      assert.ok(id && token, "the session has an id and a token");
      sessions.push({ id, token });
      assert.equal(terminal, `/api/sessions/${id}/terminal`);

      await page.waitForSelector('#lab-status[data-state="ready"]', { timeout: 60_000 });
      // The page remembers the session so a reload reattaches.
      const stored = await page.evaluate((key) => JSON.parse(sessionStorage.getItem(key)), `docklab.session.${EXERCISE}`);
      assert.deepEqual({ id: stored?.id, token: stored?.token }, { id, token }, "sessionStorage holds the session");
      assert.ok(await page.locator("#terminal").isVisible(), "the terminal is shown");
      assert.ok(await page.locator("#end-lab").isVisible(), "the End lab button is shown");

      // Wait for the shell to print something (its prompt) before typing.
      await page.waitForFunction(() => window.__docklabLines().some((l) => l.trim() !== ""), null, {
        timeout: 30_000,
      });

      await typeCommand(page, "docker run --rm busybox echo hello-from-busybox");
      await page.waitForFunction(
        () => window.__docklabLines().some((l) => l.trim() === "hello-from-busybox"),
        null,
        { timeout: 60_000, polling: 200 },
      );
      const lines = (await terminalText(page)).split("\n");
      assert.ok(
        lines.some((l) => l.includes("docker run --rm busybox echo hello-from-busybox")),
        "the typed command is echoed in the terminal",
      );
      assert.ok(
        lines.some((l) => l.trim() === "hello-from-busybox"),
        "the container's output is a line of its own",
      );
      await page.screenshot({ path: path.join(ARTIFACTS, "walking-skeleton.png"), fullPage: false });

      // The PTY follows the browser window: shrink the viewport, xterm refits, the shell sees it.
      const sizeBefore = await page.evaluate(() => ({ rows: window.docklabTerm.rows, cols: window.docklabTerm.cols }));
      const atStart = await sttySize(page);
      assert.deepEqual(atStart, sizeBefore, "at start the PTY has the terminal's size");
      await page.setViewportSize(SMALL_VIEWPORT);
      await page.waitForFunction(
        (b) => window.docklabTerm.rows !== b.rows || window.docklabTerm.cols !== b.cols,
        sizeBefore,
        { timeout: 15_000 },
      );
      await page.waitForTimeout(500); // let the refit settle (ResizeObserver + window resize)
      const expected = await page.evaluate(() => ({ rows: window.docklabTerm.rows, cols: window.docklabTerm.cols }));
      assert.notDeepEqual(expected, sizeBefore, "the terminal got a new size");
      const seen = await sttySize(page);
      assert.deepEqual(seen, expected, `stty size in the shell matches xterm's rows/cols after the resize (before: ${JSON.stringify(sizeBefore)})`);
      await page.screenshot({ path: path.join(ARTIFACTS, "walking-skeleton-resized.png"), fullPage: false });

      // End the lab: DELETE succeeds, the page says so, and the session is gone on the server.
      const [deleted] = await Promise.all([
        page.waitForResponse(
          (r) => r.request().method() === "DELETE" && new URL(r.url()).pathname === `/api/sessions/${id}`,
          { timeout: 60_000 },
        ),
        page.locator("#end-lab").click(),
      ]);
      assert.equal(deleted.status(), 204, "DELETE /api/sessions/{id} answers 204");
      await page.waitForSelector('#lab-status[data-state="ended"]', { timeout: 30_000 });
      assert.equal(
        await page.evaluate((key) => sessionStorage.getItem(key), `docklab.session.${EXERCISE}`),
        null,
        "the page forgot the session",
      );
      const gone = await fetch(`${server.url}/api/sessions/${encodeURIComponent(id)}`, {
        headers: { Authorization: `Bearer ${token}`, Accept: "application/json" },
      });
      const goneBody = await gone.text();
      assert.equal(gone.status, 404, `GET /api/sessions/{id} after End lab is 404 (got ${gone.status} ${goneBody})`);
      sessions.splice(sessions.findIndex((s) => s.id === id), 1);
      assert.deepEqual(problems.filter((p) => p.startsWith("page error")), [], "no uncaught errors in the page");
    });
  });

  test("the home page lists days 24 to 30 with titles and links", { timeout: 2 * 60_000 }, async (t) => {
    const { page, problems } = await openPage(t);
    await withDiagnostics(page, problems, "home", async () => {
      const catalog = await (await fetch(`${server.url}/api/lessons`)).json();
      const titles = new Map(catalog.map((l) => [l.day, l.title]));

      const response = await page.goto(`${server.url}/`);
      assert.equal(response.status(), 200, "the home page loads");
      const cards = await page.locator(".day-card").evaluateAll((els) =>
        els.map((el) => ({
          day: el.querySelector(".day-number")?.textContent.trim(),
          title: el.querySelector("h2")?.textContent.trim(),
          href: el.querySelector("a")?.getAttribute("href"),
        })),
      );
      assert.deepEqual(
        cards.map((c) => c.day),
        ["Day 24", "Day 25", "Day 26", "Day 27", "Day 28", "Day 29", "Day 30"],
        "seven days, 24 to 30, in order",
      );
      for (const [i, card] of cards.entries()) {
        const day = 24 + i;
        assert.ok(card.title, `day ${day} has a title`);
        assert.equal(card.title, titles.get(day), `day ${day}'s title matches /api/lessons`);
        assert.equal(card.href, `/lessons/day-${day}`, `day ${day} links to its lesson`);
        const lesson = await fetch(new URL(card.href, server.url));
        assert.equal(lesson.status, 200, `${card.href} loads`);
        assert.match(await lesson.text(), new RegExp(`<h1 id="lesson-title">[^<]*</h1>`), `${card.href} is a lesson page`);
      }
      await page.screenshot({ path: path.join(ARTIFACTS, "home.png"), fullPage: false });

      // Following a link lands on the lesson.
      await page.locator(".day-card a", { hasText: "Day 27" }).click();
      await page.waitForURL(`${server.url}/lessons/day-27`);
      assert.equal(await page.locator("#lesson-title").textContent(), titles.get(27));
      assert.deepEqual(problems.filter((p) => p.startsWith("page error")), [], "no uncaught errors in the page");
    });
  });
});
