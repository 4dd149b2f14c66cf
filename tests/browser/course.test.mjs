// The course, end to end in a real browser: a learner opens an exercise of day 27 and one of day
// 28, starts the lab, types the reference solution into the page's terminal step by step, and sees
// every task turn green; the lesson's live visual shows their own volume, networks and containers
// as they make them. Real server, real session machines, Debian's chromium via playwright-core.
//
// Run (as root, images built, server built):
//   DOCKLAB_BIN=target/debug/docklab DOCKLAB_STATE_DIR=/var/lib/docklab ARTIFACTS=/tmp/artifacts \
//     node --test --test-concurrency=1 tests/browser/course.test.mjs
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as lab from "./lab.mjs";
import { ARTIFACTS, terminalText } from "./lab.mjs";
import { startServer } from "./server.mjs";

const LESSONS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../lessons");

const VIEWPORT = { width: 1440, height: 960 };
// Pulling nothing, but each step starts containers on a shared, busy machine.
const TASK_TIMEOUT_MS = 120_000;

/**
 * The exercise's reference solution as the learner would type it: one entry per `# task:` marker,
 * {task, lines}, without the shebang, comments and `set -e` (which would end an interactive shell
 * at the first expected failure).
 */
function solutionSteps(folder) {
  const text = readFileSync(path.join(LESSONS, folder, "solution.sh"), "utf8");
  const steps = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    const marker = /^# task:\s*(\S+)/.exec(line);
    if (marker) {
      steps.push({ task: marker[1], lines: [] });
    } else if (line && !line.startsWith("#") && line !== "set -e" && steps.length) {
      steps[steps.length - 1].lines.push(line);
    }
  }
  assert.ok(steps.length >= 2, `${folder}/solution.sh has its steps`);
  return steps;
}

async function taskStates(page) {
  return page
    .locator("#lab-tasks .task")
    .evaluateAll((els) => els.map((el) => `${el.dataset.taskId}: ${el.dataset.status} ${el.querySelector(".task-detail")?.textContent || ""}`))
    .catch(() => []);
}

describe("the course in a real browser", { timeout: 20 * 60_000 }, () => {
  let server;
  let browser;
  const sessions = []; // {id, token} of every session a test created, deleted in `after`

  before(async () => {
    server = await startServer({ name: "server-course" });
    browser = await lab.launchChromium();
  });

  after(() => lab.shutDown(browser, server, () => lab.deleteSessions(server, sessions)));

  function openPage(t) {
    return lab.openPage(browser, t, { viewport: VIEWPORT });
  }

  /** Runs `body`; on failure adds the tasks' states, the live visual and the terminal text. */
  function withDiagnostics(page, problems, name, body) {
    const visual = async (page) => {
      const figures = await page
        .locator("figure.live-visual")
        .evaluateAll((els) => els.map((el) => `${el.dataset.visual} (${el.dataset.state}): ${el.textContent.trim().slice(0, 800)}`))
        .catch(() => []);
      return figures.join("\n") || "(none)";
    };
    const sections = [
      ["tasks", async (page) => (await taskStates(page)).join("\n")],
      ["live visual", visual],
      ["terminal", terminalText],
    ];
    return lab.withDiagnostics({ page, problems, server, name, sections }, body);
  }

  /** Opens the exercise's page, starts the lab and waits for the shell's prompt. */
  async function startLab(page, lesson, exercise) {
    const response = await page.goto(`${server.url}/lessons/${lesson}?exercise=${exercise}`);
    assert.equal(response.status(), 200, "the exercise page loads");
    assert.equal(await page.locator("#lab").getAttribute("data-exercise"), `${lesson}/${exercise}`);
    const [created] = await Promise.all([
      page.waitForResponse((r) => r.request().method() === "POST" && new URL(r.url()).pathname === "/api/sessions", {
        timeout: 120_000,
      }),
      page.getByRole("button", { name: "Start lab" }).click(),
    ]);
    const body = await created.json().catch(() => null);
    assert.equal(created.status(), 201, `the lab starts (got ${JSON.stringify(body)})`);
    sessions.push({ id: body.id, token: body.token });
    await page.waitForSelector('#lab-status[data-state="ready"]', { timeout: 60_000 });
    await page.waitForFunction(() => window.__docklabLines().some((l) => /[#$]\s*$/.test(l)), null, { timeout: 30_000 });
    // Nothing is done before the learner does anything.
    const passed = await page.locator('#lab-tasks .task[data-status="passed"]').count();
    assert.equal(passed, 0, "no task passes before the learner types anything");
    return body;
  }

  /** Types one step of the solution, a line at a time, and waits for its task to pass. */
  async function typeStep(page, step) {
    await page.click("#terminal");
    for (const line of step.lines) {
      await page.keyboard.type(line, { delay: 4 });
      await page.keyboard.press("Enter");
    }
    await page.waitForSelector(`#lab-tasks .task[data-task-id="${step.task}"][data-status="passed"]`, {
      timeout: TASK_TIMEOUT_MS,
    });
  }

  async function endLab(page, id) {
    const [deleted] = await Promise.all([
      page.waitForResponse((r) => r.request().method() === "DELETE" && new URL(r.url()).pathname === `/api/sessions/${id}`, {
        timeout: 60_000,
      }),
      page.locator("#end-lab").click(),
    ]);
    assert.equal(deleted.status(), 204);
    sessions.splice(sessions.findIndex((s) => s.id === id), 1);
  }

  async function shoot(page, figure, name) {
    await figure.scrollIntoViewIfNeeded();
    await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`) });
    await figure.screenshot({ path: path.join(ARTIFACTS, `${name}-visual.png`) });
  }

  test("day 26: a lesson's Run button builds a scratch image; the chart shows it to scale beside busybox, with its layers", { timeout: 6 * 60_000 }, async (t) => {
    const { page, problems } = await openPage(t);
    await withDiagnostics(page, problems, "course-day26", async () => {
      const { id } = await startLab(page, "day-26", "scratch-image");
      const figure = page.locator('figure.live-visual[data-visual="images"]');
      await figure.locator(".live-visual-body .viz").waitFor({ timeout: 60_000 });

      // The lesson's own snippet: a two-stage build whose final stage is scratch.
      const snippet = page.locator(".snippet-block", { hasText: "docker build -q -t demo-tiny:1" });
      await snippet.locator(".run-snippet").click();
      const tiny = figure.locator('.viz-bar-row[data-image="demo-tiny:1"]');
      const busybox = figure.locator('.viz-bar-row[data-image="busybox:latest"]');
      await tiny.waitFor({ timeout: 120_000 });
      await busybox.waitFor({ timeout: 30_000 });
      assert.equal(await tiny.getAttribute("data-origin"), "built");
      assert.match(await tiny.locator(".viz-bar-base").textContent(), /FROM scratch/);
      assert.equal(await busybox.getAttribute("data-origin"), "pulled");
      const width = (row) => row.locator(".viz-bar").evaluate((el) => el.getBoundingClientRect().width);
      assert.ok((await width(tiny)) < (await width(busybox)) / 10, "a few dozen bytes draw far shorter than busybox");

      // The newest build is selected: its layers, newest first, start with the COPY from the first stage.
      assert.equal(await tiny.getAttribute("aria-pressed"), "true");
      await figure.locator(".viz-layers .viz-subhead", { hasText: "demo-tiny:1" }).waitFor();
      assert.match(await figure.locator(".viz-layer-what").first().textContent(), /^COPY /);
      await shoot(page, figure, "course-day26-images");
      await busybox.click();
      await figure.locator(".viz-layers .viz-subhead", { hasText: "busybox:latest" }).waitFor();
      assert.equal(await busybox.getAttribute("aria-pressed"), "true");

      await endLab(page, id);
      assert.deepEqual(problems.filter((p) => p.startsWith("page error")), [], "no uncaught errors in the page");
    });
  });

  test("day 27, volumes-lifecycle: the solution typed in the terminal passes every task; the visual follows app-data", { timeout: 8 * 60_000 }, async (t) => {
    const { page, problems } = await openPage(t);
    await withDiagnostics(page, problems, "course-day27", async () => {
      const { id } = await startLab(page, "day-27", "volumes-lifecycle");
      const figure = page.locator('figure.live-visual[data-visual="volumes"]');
      await figure.locator(".live-visual-body .viz").waitFor({ timeout: 60_000 });
      assert.equal(await figure.getAttribute("data-state"), "live", "the visual is drawn from the session");

      const steps = solutionSteps("day-27-volumes/exercises/volumes-lifecycle");
      const tasks = await page.locator("#lab-tasks .task").evaluateAll((els) => els.map((el) => el.dataset.taskId));
      assert.deepEqual(steps.map((s) => s.task), tasks, "the solution has a step for every task, in order");
      const volume = figure.locator('.viz-volume[data-volume="app-data"]');
      for (const step of steps) {
        await typeStep(page, step);
        if (step.task === "create") {
          await volume.waitFor({ timeout: 30_000 });
          assert.match(await volume.textContent(), /No container holds it/, "a new volume is held by nobody");
        }
        if (step.task === "write") {
          // The writer has exited and still holds the volume.
          await volume.locator('li[data-container="writer"]').waitFor({ timeout: 30_000 });
          assert.match(await volume.locator('li[data-container="writer"]').textContent(), /\/data.*exited/);
          await shoot(page, figure, "course-day27-volume-held");
        }
        if (step.task === "outlives") {
          await volume.locator('li[data-container="reader"]').waitFor({ timeout: 30_000 });
          assert.equal(await volume.locator('li[data-container="writer"]').count(), 0, "writer is gone from the picture");
        }
      }
      await page.waitForSelector("#lab.all-done", { timeout: 30_000 });
      assert.equal(await page.locator("#lab-progress").textContent(), `${steps.length} of ${steps.length} done`);
      await volume.waitFor({ state: "detached", timeout: 30_000 });
      await page.screenshot({ path: path.join(ARTIFACTS, "course-day27-done.png") });
      await endLab(page, id);
      await figure.locator(".live-visual-empty", { hasText: "The lab has ended" }).waitFor({ timeout: 30_000 });
      assert.deepEqual(problems.filter((p) => p.startsWith("page error")), [], "no uncaught errors in the page");
    });
  });

  test("day 28, custom-bridge: the solution typed in the terminal passes every task; the visual shows who reaches whom", { timeout: 8 * 60_000 }, async (t) => {
    const { page, problems } = await openPage(t);
    await withDiagnostics(page, problems, "course-day28", async () => {
      const { id } = await startLab(page, "day-28", "custom-bridge");
      const figure = page.locator('figure.live-visual[data-visual="networks"]');
      await figure.locator(".live-visual-body .viz").waitFor({ timeout: 60_000 });

      const steps = solutionSteps("day-28-networking/exercises/custom-bridge");
      for (const step of steps) {
        await typeStep(page, step);
        if (step.task === "default-bridge") {
          const bridge = figure.locator('.viz-network[data-network="bridge"]');
          await bridge.locator('.viz-chip[data-container="logout"]').waitFor({ timeout: 30_000 });
          assert.equal(await bridge.locator('.viz-chip[data-container="login"]').count(), 1);
          assert.match(await bridge.textContent(), /no DNS/);
        }
      }
      await page.waitForSelector("#lab.all-done", { timeout: 30_000 });

      // The learner's network, with its two containers, and the matrix Docker's rules give.
      const secure = figure.locator('.viz-network[data-network="secure-net"]');
      await secure.locator('.viz-chip[data-container="auditor"]').waitFor({ timeout: 30_000 });
      assert.equal(await secure.getAttribute("data-kind"), "user_defined");
      assert.equal(await secure.locator('.viz-chip[data-container="finance"]').count(), 1);
      assert.match(await secure.textContent(), /DNS by container name/);
      const cell = (from, to) => figure.locator(`.viz-matrix td[data-from="${from}"][data-to="${to}"]`).getAttribute("data-reach");
      assert.equal(await cell("auditor", "finance"), "name", "same user-defined network: by name");
      assert.equal(await cell("login", "logout"), "ip", "default bridge: by IP only");
      assert.equal(await cell("login", "finance"), "no", "different bridges: no way");
      assert.equal(await cell("finance", "logout"), "no");
      await shoot(page, figure, "course-day28-done");

      // Redrawn on Docker events: a container the learner removes leaves the picture.
      await page.click("#terminal");
      await page.keyboard.type("docker rm -f auditor", { delay: 4 });
      await page.keyboard.press("Enter");
      await secure.locator('.viz-chip[data-container="auditor"]').waitFor({ state: "detached", timeout: 30_000 });
      assert.equal(await figure.locator('.viz-matrix td[data-to="auditor"]').count(), 0);

      await endLab(page, id);
      assert.deepEqual(problems.filter((p) => p.startsWith("page error")), [], "no uncaught errors in the page");
    });
  });
});
