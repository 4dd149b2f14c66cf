// Interview drills in a real browser: a flashcard round (reveal with Space, rate with the keys
// and a click, on a laptop and a phone width) and a three-question mock interview with the key
// points hit and missed. Screenshots go to $ARTIFACTS.
//
// Run (server built; no session machine is needed):
//   DOCKLAB_BIN=target/debug/docklab DOCKLAB_STATE_DIR=/var/lib/docklab ARTIFACTS=/tmp/artifacts \
//     node --test --test-concurrency=1 tests/browser/drills.test.mjs
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import * as lab from "./lab.mjs";
import { ARTIFACTS } from "./lab.mjs";
import { startServer } from "./server.mjs";

const LAPTOP = { width: 1280, height: 900 };
const PHONE = { width: 390, height: 844 };

describe("interview drills in a real browser", { timeout: 5 * 60_000 }, () => {
  let server;
  let browser;

  before(async () => {
    server = await startServer({ name: "server-drills" });
    browser = await lab.launchChromium();
  });

  after(() => lab.shutDown(browser, server));

  // No terminal on these pages, and the tests assert there are no problems at all, so failed
  // requests are not counted as problems here.
  function openPage(t, viewport = LAPTOP) {
    return lab.openPage(browser, t, {
      viewport,
      hasTouch: viewport === PHONE,
      timeout: 20_000,
      terminal: false,
      requestFailed: false,
    });
  }

  function withDiagnostics(page, problems, name, body) {
    return lab.withDiagnostics({ page, problems, server, name, fullPage: true }, body);
  }

  /** Waits for the POST that rating a card sends, and returns its JSON. */
  async function rated(page, action) {
    const [response] = await Promise.all([
      page.waitForResponse((r) => r.request().method() === "POST" && new URL(r.url()).pathname === "/api/drills/reviews"),
      action(),
    ]);
    assert.equal(response.status(), 200, "the rating is saved");
    return response.json();
  }

  const noHorizontalScroll = (page) =>
    page.evaluate(() => document.documentElement.scrollWidth <= document.documentElement.clientWidth + 1);

  test("a flashcard round: think, reveal with Space, rate with 1-4 and a click", async (t) => {
    const { page, problems } = await openPage(t);
    await withDiagnostics(page, problems, "drills-flashcards", async () => {
      const hub = await page.goto(`${server.url}/drills`);
      assert.equal(hub.status(), 200);
      await page.getByRole("link", { name: /Start today's cards/ }).click();
      await page.waitForURL(`${server.url}/drills/flashcards`);

      const card = page.locator("#flashcard");
      await page.waitForSelector('#flashcard[data-state="question"]');
      assert.match(await page.locator("#cards-count").textContent(), /^10 cards left today$/, "ten new cards for a new learner");
      assert.ok(!(await page.locator("#card-answer").isVisible()), "the answer is hidden while you think");
      const first = await card.getAttribute("data-question");
      await page.screenshot({ path: path.join(ARTIFACTS, "drills-flashcard-question.png") });

      await page.keyboard.press("Space");
      await page.waitForSelector('#flashcard[data-state="answer"]');
      assert.ok(await page.locator("#card-answer").isVisible(), "Space reveals the answer");
      assert.ok((await page.locator("#card-points li").count()) >= 2, "with its key points");
      await page.screenshot({ path: path.join(ARTIFACTS, "drills-flashcard-answer.png") });

      // 3 = good: due tomorrow, and the next card comes up.
      const good = await rated(page, () => page.keyboard.press("3"));
      assert.equal(good.rating, "good");
      assert.equal(good.card.interval_days, 1);
      await page.waitForFunction((id) => document.getElementById("flashcard").dataset.question !== id, first);
      const second = await card.getAttribute("data-question");

      // 1 = again: it comes back at the end of this session.
      await page.keyboard.press("Space");
      const again = await rated(page, () => page.keyboard.press("1"));
      assert.equal(again.rating, "again");
      assert.match(await page.locator("#cards-count").textContent(), /^9 cards left today · 2 reviewed$/);

      // A click on "Easy" works as well as the key.
      await page.getByRole("button", { name: /Reveal the answer/ }).click();
      const easy = await rated(page, () => page.getByRole("button", { name: /Easy/ }).click());
      assert.equal(easy.card.interval_days, 4);

      // The schedule is kept for this learner: progress counts three cards in learning.
      const progress = await (await page.request.get(`${server.url}/api/drills/progress`)).json();
      const learningTotal = progress.reduce((n, p) => n + p.learning, 0);
      assert.ok(learningTotal >= 3, `three reviewed cards are learning: ${JSON.stringify(progress)}`);
      const queue = await (await page.request.get(`${server.url}/api/drills/queue`)).json();
      assert.ok(!queue.cards.some((c) => c.id === first), "a card rated good is not due again today");
      assert.equal(queue.new, 7, "three of today's ten new cards are met");
      assert.ok(second);

      // The hub's chart shows it.
      await page.goto(`${server.url}/drills`);
      const learningBars = await page.locator("#tag-chart .bar-learning").evaluateAll((els) =>
        els.filter((el) => Number(el.getAttribute("width")) > 0).length,
      );
      assert.ok(learningBars >= 1, "the progress chart has learning bars");
      await page.screenshot({ path: path.join(ARTIFACTS, "drills-hub.png"), fullPage: true });
      assert.deepEqual(problems, [], "no errors in the page");
    });
  });

  test("flashcards fit a phone: no sideways scrolling, rating buttons big enough to tap", async (t) => {
    const { page, problems } = await openPage(t, PHONE);
    await withDiagnostics(page, problems, "drills-phone", async () => {
      await page.goto(`${server.url}/drills/flashcards?tag=networking`);
      await page.waitForSelector('#flashcard[data-state="question"]');
      assert.match(await page.locator("#card-tags").textContent(), /networking/);
      await page.locator("#reveal").tap();
      await page.waitForSelector('#flashcard[data-state="answer"]');
      assert.ok(await noHorizontalScroll(page), "the card fits the phone's width");
      const good = page.getByRole("button", { name: /Good/ });
      const box = await good.boundingBox();
      assert.ok(box.height >= 44 && box.width >= 120, `the Good button is tappable: ${JSON.stringify(box)}`);
      await page.screenshot({ path: path.join(ARTIFACTS, "drills-flashcard-phone.png"), fullPage: true });
      await rated(page, () => good.tap());
      await page.goto(`${server.url}/drills`);
      assert.ok(await noHorizontalScroll(page), "the hub fits the phone's width");
      await page.screenshot({ path: path.join(ARTIFACTS, "drills-hub-phone.png"), fullPage: true });
      assert.deepEqual(problems, [], "no errors in the page");
    });
  });

  test("a three-question mock interview: type, reveal key points hit and missed, score, summary", async (t) => {
    const { page, problems } = await openPage(t);
    await withDiagnostics(page, problems, "drills-mock", async () => {
      await page.goto(`${server.url}/drills/mock`);
      await page.locator("#mock-count").selectOption("3");
      await page.getByRole("button", { name: "Start the interview" }).click();
      await page.waitForSelector('#mock-question[data-state="answering"]');
      assert.equal(await page.locator("#mock-position").textContent(), "Question 1 of 3");
      assert.match(await page.locator("#mock-timer").textContent(), /^[12]:\d\d$/, "the clock runs");

      const answers = [
        // Mentions a lot; whatever the question, some key point words are likely in here.
        "Containers share the host kernel and use namespaces and cgroups. I would use a multi-stage build, " +
          "a user-defined network, a named volume, docker logs, docker inspect, and set memory limits.",
        "I am not sure.",
        "",
      ];
      const seen = [];
      for (let i = 0; i < 3; i++) {
        const id = await page.locator("#mock-question").getAttribute("data-question");
        seen.push(id);
        await page.locator("#mock-answer").fill(answers[i]);
        const [checked] = await Promise.all([
          page.waitForResponse((r) => new URL(r.url()).pathname === "/api/drills/answers"),
          page.getByRole("button", { name: "Reveal the model answer" }).click(),
        ]);
        const body = await checked.json();
        await page.waitForSelector('#mock-question[data-state="revealed"]');
        const hits = await page.locator('#mock-points li[data-hit="true"]').count();
        const misses = await page.locator('#mock-points li[data-hit="false"]').count();
        assert.equal(hits, body.hit, "the page marks the key points the server matched");
        assert.equal(hits + misses, body.total);
        if (i === 2) assert.equal(hits, 0, "an empty answer hits nothing");
        assert.match(await page.locator("#mock-note").textContent(), /hint, not a verdict/);
        assert.ok((await page.locator("#mock-model").textContent()).length > 100, "the model answer is shown");
        if (i === 0) await page.screenshot({ path: path.join(ARTIFACTS, "drills-mock-reveal.png"), fullPage: true });
        // Self-score: by click for the first two, by key for the last.
        if (i < 2) await page.getByRole("button", { name: i === 0 ? "Good" : "Partly" }).click();
        else await page.keyboard.press("1");
      }
      assert.equal(new Set(seen).size, 3, "three different questions");

      await page.waitForSelector("#mock-summary:not([hidden])");
      assert.equal(await page.locator("#mock-rows tr").count(), 3);
      assert.match(await page.locator("#mock-total").textContent(), /You scored yourself 3 of 9 \(33%\)/);
      const scores = await page.locator("#mock-rows tr td:nth-child(2)").allTextContents();
      assert.deepEqual(scores, ["Good", "Partly", "Missed it"]);
      await page.screenshot({ path: path.join(ARTIFACTS, "drills-mock-summary.png"), fullPage: true });
      assert.deepEqual(problems, [], "no errors in the page");
    });
  });
});
