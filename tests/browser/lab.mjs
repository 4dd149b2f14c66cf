// What the browser test files share: the chromium they drive, a page with its problems collected,
// the terminal's text, failure diagnostics, and the `after` hook's clean-up. Each test file keeps
// its own viewport sizes, timeouts and what it adds to a failure message, and passes them in.
import { mkdirSync } from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";

/** Where screenshots and server logs go. */
export const ARTIFACTS = process.env.ARTIFACTS || path.resolve("artifacts");
mkdirSync(ARTIFACTS, { recursive: true });

export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** Debian's chromium, headless, driven by playwright-core. */
export function launchChromium() {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 60_000 });
}

// Installed in every page that has a terminal: the terminal's buffer as logical lines
// (soft-wrapped rows joined).
export function installTerminalHelpers() {
  window.__docklabLines = function () {
    const term = window.docklabTerm;
    if (!term) return [];
    const buf = term.buffer.active;
    const lines = [];
    for (let i = 0; i < buf.length; i++) {
      const line = buf.getLine(i);
      if (!line) continue;
      const text = line.translateToString(true);
      if (line.isWrapped && lines.length) lines[lines.length - 1] += text;
      else lines.push(text);
    }
    return lines;
  };
}

/** The terminal's text as the page shows it, or why it could not be read. */
export async function terminalText(page) {
  try {
    return (await page.evaluate(() => window.__docklabLines())).join("\n").replace(/\n+$/, "");
  } catch (err) {
    return `(could not read the terminal: ${err.message})`;
  }
}

/**
 * A fresh context and page, with console errors collected for failure messages; the context is
 * closed after the test `t`. `terminal` installs the terminal helpers; `requestFailed` also counts
 * failed requests as problems (off where a test asserts there are no problems at all).
 */
export async function openPage(
  browser,
  t,
  { viewport, hasTouch = false, timeout = 30_000, terminal = true, requestFailed = true },
) {
  const context = await browser.newContext({ viewport, hasTouch });
  if (terminal) await context.addInitScript(installTerminalHelpers);
  context.setDefaultTimeout(timeout);
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
  page.on("console", (msg) => {
    if (msg.type() === "error") problems.push(`console error: ${msg.text()}`);
  });
  if (requestFailed) {
    page.on("requestfailed", (req) => problems.push(`request failed: ${req.method()} ${req.url()} ${req.failure()?.errorText}`));
  }
  t.after(() => context.close());
  return { context, page, problems };
}

/**
 * Runs `body`; on failure saves a screenshot ($ARTIFACTS/<name>-failure.png) and adds to the
 * error each of `sections` ([title, async (page) => text], in order), then the page's problems
 * and the server's log.
 */
export async function withDiagnostics({ page, problems, server, name, fullPage = false, sections = [] }, body) {
  try {
    await body();
  } catch (err) {
    await page.screenshot({ path: path.join(ARTIFACTS, `${name}-failure.png`), fullPage }).catch(() => {});
    for (const [title, read] of sections) err.message += `\n--- ${title} ---\n${await read(page)}`;
    err.message += `\n--- page problems ---\n${problems.join("\n") || "(none)"}` + `\n${server.describe()}`;
    throw err;
  }
}

/** Best effort: a test that failed half-way must not leave a session machine running. */
export async function deleteSessions(server, sessions) {
  for (const s of sessions) {
    try {
      await fetch(`${server.url}/api/sessions/${encodeURIComponent(s.id)}`, {
        method: "DELETE",
        headers: { Authorization: `Bearer ${s.token}` },
        signal: AbortSignal.timeout(60_000),
      });
    } catch (_) {
      /* the server may already be gone */
    }
  }
}

/**
 * The `after` hook: runs `cleanUp` (ending what the tests made), then closes the browser and
 * stops the server, each even if the step before it failed.
 */
export async function shutDown(browser, server, cleanUp = async () => {}) {
  try {
    await cleanUp();
  } finally {
    try {
      if (browser) await browser.close();
    } finally {
      if (server) await server.stop();
    }
  }
}
