// docklab interview drills: flashcards (/drills/flashcards) and mock interviews (/drills/mock).
// Question and answer HTML comes from docklab's own content; what the learner types is only
// ever sent to the server, never inserted as HTML.
(function () {
  "use strict";

  const $ = (id) => document.getElementById(id);

  async function api(method, path, body) {
    const response = await fetch(path, {
      method,
      headers: body ? { "Content-Type": "application/json", Accept: "application/json" } : { Accept: "application/json" },
      body: body ? JSON.stringify(body) : undefined,
      credentials: "same-origin",
    });
    const data = await response.json().catch(() => null);
    if (!response.ok) throw new Error((data && data.error) || `${method} ${path} answered ${response.status}`);
    return data;
  }

  function typingInField(event) {
    const t = event.target;
    return t && (t.tagName === "TEXTAREA" || t.tagName === "INPUT" || t.tagName === "SELECT" || t.isContentEditable);
  }

  function when(iso) {
    const d = new Date(iso);
    const mins = Math.round((d - Date.now()) / 60000);
    if (mins < 60) return `in ${Math.max(mins, 1)} minute${mins === 1 ? "" : "s"}`;
    if (mins < 24 * 60) return `at ${d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}`;
    return `on ${d.toLocaleDateString([], { weekday: "long", day: "numeric", month: "long" })}`;
  }

  // ---- flashcards ------------------------------------------------------------------------

  function flashcards() {
    const card = $("flashcard");
    const params = new URLSearchParams(location.search);
    const tag = params.get("tag") || "";
    $("card-tag").value = tag;
    $("card-tag").addEventListener("change", (e) => {
      const q = e.target.value ? `?tag=${encodeURIComponent(e.target.value)}` : "";
      location.href = `/drills/flashcards${q}`;
    });

    let queue = [];
    let reviewed = 0;
    let nextDue = null;
    let busy = false;

    function counts() {
      const left = queue.length;
      $("cards-count").textContent =
        `${left} card${left === 1 ? "" : "s"} left today` + (reviewed ? ` · ${reviewed} reviewed` : "");
    }

    function show() {
      counts();
      if (queue.length === 0) {
        card.hidden = true;
        card.dataset.state = "done";
        $("cards-done").hidden = false;
        $("cards-done-text").textContent =
          (reviewed ? `You reviewed ${reviewed} card${reviewed === 1 ? "" : "s"}. ` : "No cards are due right now. ") +
          (nextDue ? `The next one is due ${when(nextDue)}.` : "Come back tomorrow for new ones.");
        return;
      }
      const c = queue[0];
      card.hidden = false;
      card.dataset.state = "question";
      card.dataset.question = c.id;
      $("card-tags").textContent = c.tags.join(", ");
      $("card-difficulty").textContent = c.difficulty;
      $("card-day").textContent = c.day;
      $("card-stage").textContent = c.stage === "new" ? "new card" : c.stage;
      $("card-question").innerHTML = c.question_html;
      $("card-answer-body").innerHTML = c.answer_html;
      const points = $("card-points");
      points.replaceChildren(
        ...c.key_points.map((p) => {
          const li = document.createElement("li");
          li.innerHTML = p;
          return li;
        }),
      );
      const practical = $("card-practical");
      practical.hidden = !c.practical;
      if (c.practical) {
        const [lesson, slug] = c.practical.split("/");
        $("card-practical-link").href = `/lessons/${lesson}?exercise=${slug}`;
      }
      $("card-answer").hidden = true;
      $("card-think").hidden = false;
      $("reveal").hidden = false;
      $("reveal").focus({ preventScroll: true });
    }

    function reveal() {
      if (card.dataset.state !== "question") return;
      card.dataset.state = "answer";
      $("card-answer").hidden = false;
      $("card-think").hidden = true;
      $("reveal").hidden = true;
    }

    async function rate(rating) {
      if (card.dataset.state !== "answer" || busy) return;
      busy = true;
      const c = queue[0];
      try {
        const result = await api("POST", "/api/drills/reviews", { question: c.id, rating });
        reviewed += 1;
        queue.shift();
        // "Again" comes back in this session, after the other cards.
        if (rating === "again") queue.push({ ...c, stage: result.stage });
        else if (!nextDue || result.due_at < nextDue) nextDue = result.due_at;
        show();
      } catch (err) {
        $("cards-count").textContent = `Could not save your rating: ${err.message}`;
      } finally {
        busy = false;
      }
    }

    $("reveal").addEventListener("click", reveal);
    card.querySelectorAll("[data-rating]").forEach((b) => b.addEventListener("click", () => rate(b.dataset.rating)));
    document.addEventListener("keydown", (e) => {
      if (typingInField(e) || e.ctrlKey || e.metaKey || e.altKey) return;
      if ((e.key === " " || e.key === "Enter") && card.dataset.state === "question") {
        e.preventDefault();
        reveal();
      } else if (card.dataset.state === "answer" && ["1", "2", "3", "4"].includes(e.key)) {
        e.preventDefault();
        rate(["again", "hard", "good", "easy"][Number(e.key) - 1]);
      }
    });

    const tz = -new Date().getTimezoneOffset();
    const query = new URLSearchParams({ tz: String(tz) });
    if (tag) query.set("tag", tag);
    api("GET", `/api/drills/queue?${query}`)
      .then((data) => {
        queue = data.cards;
        nextDue = data.next_due;
        show();
      })
      .catch((err) => {
        $("cards-count").textContent = `Could not load your cards: ${err.message}`;
      });
  }

  // ---- mock interview --------------------------------------------------------------------

  function mock() {
    const SCORES = ["Missed it", "Partly", "Good", "Excellent"];
    let questions = [];
    let seconds = 120;
    let index = 0;
    let results = [];
    let timer = null;
    let left = 0;
    let startedAt = 0;
    let revealed = false;

    const fmt = (s) => `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;

    function tick() {
      left -= 1;
      $("mock-timer").textContent = fmt(Math.max(left, 0));
      $("mock-timer").dataset.low = String(left <= 15);
      if (left <= 0) {
        stopTimer();
        reveal(true);
      }
    }

    function stopTimer() {
      if (timer) clearInterval(timer);
      timer = null;
    }

    function showQuestion() {
      const q = questions[index];
      revealed = false;
      $("mock-question").hidden = false;
      $("mock-question").dataset.state = "answering";
      $("mock-question").dataset.question = q.id;
      $("mock-position").textContent = `Question ${index + 1} of ${questions.length}`;
      $("mock-meta").textContent = `${q.tags.join(", ")} · ${q.difficulty} · day ${q.day}`;
      $("mock-text").innerHTML = q.question_html;
      $("mock-answer").value = "";
      $("mock-answer").disabled = false;
      $("mock-reveal").hidden = false;
      $("mock-feedback").hidden = true;
      $("mock-timeup").hidden = true;
      left = seconds;
      $("mock-timer").textContent = fmt(left);
      $("mock-timer").dataset.low = "false";
      startedAt = Date.now();
      stopTimer();
      timer = setInterval(tick, 1000);
      $("mock-answer").focus();
    }

    async function reveal(timeUp) {
      if (revealed) return;
      revealed = true;
      stopTimer();
      const q = questions[index];
      const typed = $("mock-answer").value;
      $("mock-answer").disabled = true;
      $("mock-reveal").hidden = true;
      try {
        const r = await api("POST", "/api/drills/answers", { question: q.id, answer: typed });
        results[index] = {
          question: q,
          hit: r.hit,
          total: r.total,
          seconds: Math.min(seconds, Math.round((Date.now() - startedAt) / 1000)),
          score: null,
        };
        $("mock-hit").textContent = `(${r.hit} of ${r.total})`;
        $("mock-points").replaceChildren(
          ...r.key_points.map((k) => {
            const li = document.createElement("li");
            li.dataset.hit = String(k.hit);
            li.innerHTML = k.point_html;
            li.insertAdjacentText("beforeend", k.hit ? "" : " (not found in your answer)");
            return li;
          }),
        );
        $("mock-note").textContent = r.note;
        $("mock-model").innerHTML = r.answer_html;
        $("mock-timeup").hidden = !timeUp;
        $("mock-feedback").hidden = false;
        $("mock-question").dataset.state = "revealed";
      } catch (err) {
        revealed = false;
        $("mock-reveal").hidden = false;
        $("mock-answer").disabled = false;
        $("mock-position").textContent = `Could not check your answer: ${err.message}`;
      }
    }

    function score(n) {
      if ($("mock-question").dataset.state !== "revealed") return;
      results[index].score = n;
      index += 1;
      if (index < questions.length) showQuestion();
      else summary();
    }

    function summary() {
      $("mock-question").hidden = true;
      $("mock-question").dataset.state = "done";
      const got = results.reduce((s, r) => s + r.score, 0);
      const max = results.length * 3;
      const hits = results.reduce((s, r) => s + r.hit, 0);
      const points = results.reduce((s, r) => s + r.total, 0);
      $("mock-total").textContent =
        `You scored yourself ${got} of ${max} (${Math.round((got / max) * 100)}%). ` +
        `Your answers mentioned ${hits} of ${points} key points.`;
      $("mock-rows").replaceChildren(
        ...results.map((r) => {
          const tr = document.createElement("tr");
          const question = document.createElement("td");
          question.innerHTML = r.question.question_html;
          if (r.question.practical) {
            const [lesson, slug] = r.question.practical.split("/");
            const link = document.createElement("a");
            link.href = `/lessons/${lesson}?exercise=${slug}`;
            link.textContent = "Prove it in a lab";
            question.append(" ", link);
          }
          tr.append(question);
          for (const text of [SCORES[r.score], `${r.hit} of ${r.total}`, fmt(r.seconds)]) {
            const td = document.createElement("td");
            td.textContent = text;
            tr.append(td);
          }
          return tr;
        }),
      );
      $("mock-summary").hidden = false;
    }

    $("mock-setup").addEventListener("submit", async (e) => {
      e.preventDefault();
      const form = new FormData(e.target);
      seconds = Number(form.get("seconds"));
      const body = { count: Number(form.get("count")), seconds_per_question: seconds, tags: form.getAll("tags") };
      $("mock-start").disabled = true;
      try {
        const data = await api("POST", "/api/drills/mock", body);
        questions = data.questions;
        results = [];
        index = 0;
        $("mock-setup").hidden = true;
        showQuestion();
      } catch (err) {
        $("mock-start").disabled = false;
        alert(`Could not start the interview: ${err.message}`);
      }
    });
    $("mock-reveal").addEventListener("click", () => reveal(false));
    $("mock-answer").addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        reveal(false);
      }
    });
    document.querySelectorAll("#mock-feedback [data-score]").forEach((b) =>
      b.addEventListener("click", () => score(Number(b.dataset.score))),
    );
    document.addEventListener("keydown", (e) => {
      if (typingInField(e) || e.ctrlKey || e.metaKey || e.altKey) return;
      if ($("mock-question").dataset.state === "revealed" && ["1", "2", "3", "4"].includes(e.key)) {
        e.preventDefault();
        score(Number(e.key) - 1);
      }
    });
  }

  if ($("flashcards-app")) flashcards();
  if ($("mock-app")) mock();
})();
