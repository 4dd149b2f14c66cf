use std::collections::HashMap;

use axum::body::{to_bytes, Body};
use axum::http::{header, Request, StatusCode};
use lessons::questions::{Difficulty, Tag};
use tower::ServiceExt;

use super::schedule::*;
use crate::config::ServerConfig;
use crate::testing::fake_state;

/// 2026-03-02 09:00:00 UTC, a fixed clock.
const T0: i64 = 1_772_442_000;
const MIN: i64 = 60;
const HOUR: i64 = 3_600;

fn days(n: i64) -> i64 {
    n * DAY_S
}

#[test]
fn a_card_survives_its_store_row_and_every_rating_is_stored_by_its_name() {
    let card = Card::unseen().review(Rating::Good, T0).review(Rating::Hard, T0 + days(1)).review(Rating::Again, T0 + days(3));
    let row = crate::store::CardRow::from(&card);
    assert_eq!(Card::from(row), card);
    for rating in [Rating::Again, Rating::Hard, Rating::Good, Rating::Easy] {
        let stored = crate::store::RatingRow::from(rating);
        assert_eq!(Rating::parse(stored.0), Some(rating));
    }
}

// ---- the schedule --------------------------------------------------------------------------

#[test]
fn good_answers_grow_the_interval_1_6_then_by_ease() {
    let c1 = Card::unseen().review(Rating::Good, T0);
    assert_eq!((c1.reps, c1.interval_days, c1.due, c1.first_review), (1, 1, T0 + days(1), T0));
    let c2 = c1.review(Rating::Good, c1.due);
    assert_eq!((c2.interval_days, c2.due), (6, c1.due + days(6)));
    let c3 = c2.review(Rating::Good, c2.due);
    assert_eq!(c3.interval_days, 15, "6 × 2.5");
    let c4 = c3.review(Rating::Good, c3.due);
    assert_eq!(c4.interval_days, 38, "15 × 2.5, rounded");
    assert!(c4.is_mature() && !c2.is_mature());
    assert_eq!(c4.ease, START_EASE, "good keeps the ease");
    assert_eq!(c4.first_review, T0, "the first review stays");
}

#[test]
fn hard_and_easy_shorten_and_lengthen_and_move_the_ease() {
    let learned = Card::unseen().review(Rating::Good, T0).review(Rating::Good, T0 + days(1));
    assert_eq!(learned.interval_days, 6);
    let hard = learned.review(Rating::Hard, T0 + days(7));
    assert_eq!(hard.interval_days, 7, "6 × 1.2 = 7.2, rounded");
    assert!((hard.ease - 2.35).abs() < 1e-9);
    let easy = learned.review(Rating::Easy, T0 + days(7));
    assert_eq!(easy.interval_days, 20, "6 × 2.5 × 1.3 = 19.5, rounded");
    assert!((easy.ease - 2.65).abs() < 1e-9);
    assert_eq!(Card::unseen().review(Rating::Easy, T0).interval_days, 4);
    assert_eq!(Card::unseen().review(Rating::Hard, T0).interval_days, 1);
    // Hard always moves forward, even on a one-day interval.
    let one = Card::unseen().review(Rating::Good, T0);
    assert_eq!(one.review(Rating::Hard, T0 + days(1)).interval_days, 2);
}

#[test]
fn again_is_a_lapse_that_comes_back_in_ten_minutes_and_the_ease_has_a_floor() {
    let new_again = Card::unseen().review(Rating::Again, T0);
    assert_eq!((new_again.reps, new_again.lapses, new_again.due), (0, 0, T0 + 10 * MIN), "no lapse before it was learned");
    assert!(new_again.is_due(T0 + 10 * MIN) && !new_again.is_due(T0 + 9 * MIN));

    let mut card = Card::unseen().review(Rating::Good, T0).review(Rating::Good, T0 + days(1)).review(Rating::Good, T0 + days(7));
    assert_eq!(card.interval_days, 15);
    let lapsed = card.review(Rating::Again, T0 + days(22));
    assert_eq!((lapsed.reps, lapsed.lapses, lapsed.interval_days), (0, 1, 0));
    assert_eq!(lapsed.due, T0 + days(22) + RELEARN_DELAY_S);
    assert!((lapsed.ease - 2.3).abs() < 1e-9);
    // Relearning starts again at one day.
    assert_eq!(lapsed.review(Rating::Good, lapsed.due).interval_days, 1);

    for i in 0..20 {
        card = card.review(Rating::Again, T0 + i * HOUR);
    }
    assert_eq!(card.ease, MIN_EASE);
    assert_eq!(card.lapses, 1, "only the first again lapsed a learned card");
}

#[test]
fn intervals_are_capped_at_a_year() {
    let mut card = Card::unseen();
    let mut now = T0;
    for _ in 0..12 {
        card = card.review(Rating::Easy, now);
        now = card.due;
    }
    assert_eq!(card.interval_days, MAX_INTERVAL_DAYS);
    assert_eq!(card.due - card.last_review, days(365));
}

#[test]
fn the_day_starts_at_the_learners_midnight() {
    assert_eq!(day_start(T0, 0), T0 - 9 * HOUR);
    // UTC+10: 09:00 UTC is 19:00 local, the day began at 14:00 UTC the day before.
    assert_eq!(day_start(T0, 600), T0 - 9 * HOUR - 10 * HOUR);
    // UTC−10: 23:00 local the day before, which began 23 hours earlier.
    assert_eq!(day_start(T0, -600), T0 - 23 * HOUR);
}

fn bank() -> lessons::Catalog {
    lessons::Catalog::embedded().expect("the built-in content is valid")
}

#[test]
fn the_daily_queue_has_due_cards_most_overdue_first_then_new_ones_spread_over_tags() {
    let catalog = bank();
    let questions = catalog.questions();
    let mut cards = HashMap::new();
    // Three reviewed yesterday: one due now, one overdue by a day, one not due for days.
    cards.insert("copy-vs-add".to_owned(), Card { due: T0 - HOUR, first_review: T0 - days(2), ..Card::unseen().review(Rating::Good, T0 - days(2)) });
    cards.insert("what-is-docker".to_owned(), Card { due: T0 - days(1), first_review: T0 - days(3), ..Card::unseen().review(Rating::Good, T0 - days(3)) });
    cards.insert("network-types".to_owned(), Card::unseen().review(Rating::Easy, T0 - HOUR));

    let today = day_start(T0, 0);
    let q = daily_queue(questions, &cards, T0, today, 10, None);
    let due: Vec<&str> = q.due.iter().map(|q| q.id.as_str()).collect();
    assert_eq!(due, ["what-is-docker", "copy-vs-add"]);
    assert_eq!(q.next_due, Some(T0 - HOUR + days(4)));
    // network-types was met today: 9 new ones are left, at least one from each tag's turn.
    assert_eq!(q.new.len(), 9);
    let first_tags: Vec<Tag> = q.new.iter().take(7).map(|q| q.primary_tag()).collect();
    assert_eq!(first_tags, Tag::ALL.to_vec(), "one of each tag before a second of any");
    assert!(q.new.iter().take(7).all(|q| q.difficulty == Difficulty::Easy), "easy ones first within a tag");
    assert!(q.new.iter().all(|n| !cards.contains_key(&n.id)));

    // Later that day, with ten new cards met, only due ones remain.
    for (i, n) in q.new.iter().enumerate() {
        cards.insert(n.id.clone(), Card::unseen().review(Rating::Good, T0 + i as i64 * MIN));
    }
    let later = daily_queue(questions, &cards, T0 + HOUR, today, 10, None);
    assert!(later.new.is_empty());
    assert_eq!(later.due.len(), 2);
    // The next morning: yesterday's new cards are due, and ten new ones are allowed again.
    let tomorrow = T0 + days(1) + HOUR;
    let next = daily_queue(questions, &cards, tomorrow, day_start(tomorrow, 0), 10, None);
    assert_eq!(next.due.len(), 2 + 9);
    assert_eq!(next.new.len(), 10);

    // A tag narrows both.
    let networking = daily_queue(questions, &cards, tomorrow, day_start(tomorrow, 0), 3, Some(Tag::Networking));
    assert!(networking.due.iter().chain(&networking.new).all(|q| q.has_tag(Tag::Networking)));
    assert_eq!(networking.new.len(), 3);
}

#[test]
fn progress_by_tag_counts_new_learning_mature_and_due() {
    let catalog = bank();
    let questions = catalog.questions();
    let mut cards = HashMap::new();
    cards.insert("copy-vs-add".to_owned(), Card { interval_days: 30, due: T0 + days(5), ..Card::unseen() });
    cards.insert("reduce-image-size".to_owned(), Card { interval_days: 3, due: T0 - 1, ..Card::unseen() });
    let progress = progress_by_tag(questions, &cards, T0);
    assert_eq!(progress.iter().map(|p| p.tag).collect::<Vec<_>>(), Tag::ALL.to_vec());
    let images = progress.iter().find(|p| p.tag == Tag::Images).unwrap();
    assert_eq!((images.mature, images.learning, images.due), (1, 1, 1));
    assert_eq!(images.new, images.total - 2);
    let basics = &progress[0];
    assert_eq!((basics.mature, basics.learning, basics.new), (0, 0, basics.total));
}

#[test]
fn a_mock_interview_mixes_tags_and_difficulties_and_a_seed_repeats_it() {
    let catalog = bank();
    let questions = catalog.questions();
    let three = mock_interview(questions, 3, &[], 7);
    assert_eq!(three.len(), 3);
    let tags: std::collections::HashSet<Tag> = three.iter().map(|q| q.primary_tag()).collect();
    let levels: std::collections::HashSet<Difficulty> = three.iter().map(|q| q.difficulty).collect();
    assert_eq!((tags.len(), levels.len()), (3, 3), "{three:?}");
    let ids = |qs: &[&lessons::Question]| qs.iter().map(|q| q.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&three), ids(&mock_interview(questions, 3, &[], 7)), "same seed, same interview");
    assert_ne!(ids(&mock_interview(questions, 10, &[], 1)), ids(&mock_interview(questions, 10, &[], 2)));

    let seven = mock_interview(questions, 7, &[], 99);
    let tags: std::collections::HashSet<Tag> = seven.iter().map(|q| q.primary_tag()).collect();
    assert_eq!(tags.len(), 7, "seven questions, seven tags");

    let net = mock_interview(questions, 5, &[Tag::Networking, Tag::Storage], 3);
    assert!(net.iter().all(|q| q.has_tag(Tag::Networking) || q.has_tag(Tag::Storage)));
    assert_eq!(mock_interview(questions, 1000, &[], 3).len(), questions.len(), "never more than the bank");
}

// ---- the routes ----------------------------------------------------------------------------

struct Answer {
    status: StatusCode,
    cookie: Option<String>,
    body: String,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

async fn call(app: &axum::Router, method: &str, path: &str, cookie: Option<&str>, body: Option<serde_json::Value>) -> Answer {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let request = match body {
        Some(body) => request.header(header::CONTENT_TYPE, "application/json").body(Body::from(body.to_string())),
        None => request.body(Body::empty()),
    }
    .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let cookie = response
        .headers()
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned);
    let body = String::from_utf8_lossy(&to_bytes(response.into_body(), usize::MAX).await.unwrap()).into_owned();
    Answer { status, cookie, body }
}

fn app() -> axum::Router {
    let (state, _) = fake_state(ServerConfig::default());
    crate::app::app(state)
}

#[tokio::test]
async fn the_question_list_has_no_answers_and_filters_by_tag_and_difficulty() {
    let app = app();
    let all = call(&app, "GET", "/api/drills/questions", None, None).await;
    assert_eq!(all.status, StatusCode::OK);
    let list = all.json();
    let list = list.as_array().unwrap();
    assert!(list.len() >= 80, "{}", list.len());
    let first = &list[0];
    for field in ["id", "question", "tags", "difficulty", "day"] {
        assert!(first.get(field).is_some(), "{field} missing: {first}");
    }
    assert!(!all.body.contains("answer") && !all.body.contains("key_points"), "no answers in the list");

    let hard_net = call(&app, "GET", "/api/drills/questions?tag=networking&difficulty=hard", None, None).await.json();
    let hard_net = hard_net.as_array().unwrap();
    assert!(!hard_net.is_empty());
    assert!(hard_net.iter().all(|q| q["difficulty"] == "hard" && q["tags"].as_array().unwrap().contains(&"networking".into())));

    let bad = call(&app, "GET", "/api/drills/questions?tag=kubernetes", None, None).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.json()["error"].as_str().unwrap().contains("basics, images"), "{}", bad.body);
}

#[tokio::test]
async fn rating_a_card_schedules_it_for_that_learner_only() {
    let app = app();
    let first = call(&app, "GET", "/api/drills/queue", None, None).await;
    assert_eq!(first.status, StatusCode::OK);
    let cookie = first.cookie.clone().expect("a new learner gets a cookie");
    let queue = first.json();
    assert_eq!((queue["due"].as_u64(), queue["new"].as_u64()), (Some(0), Some(10)));
    let card = &queue["cards"][0];
    assert!(card["answer_html"].as_str().is_some_and(|a| !a.is_empty()), "flashcards carry their answer");
    assert_eq!(card["stage"], "new");
    let id = card["id"].as_str().unwrap().to_owned();

    let rated = call(&app, "POST", "/api/drills/reviews", Some(&cookie), Some(serde_json::json!({"question": id, "rating": "again"}))).await;
    assert_eq!(rated.status, StatusCode::OK, "{}", rated.body);
    let rated = rated.json();
    assert_eq!(rated["card"]["interval_days"], 0);
    assert_eq!(rated["stage"], "learning");
    let again = call(&app, "POST", "/api/drills/reviews", Some(&cookie), Some(serde_json::json!({"question": id, "rating": "good"}))).await.json();
    assert_eq!(again["card"]["interval_days"], 1);

    // The card left the queue (due tomorrow); the day's allowance counts it.
    let queue = call(&app, "GET", "/api/drills/queue", Some(&cookie), None).await.json();
    let ids: Vec<&str> = queue["cards"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert!(!ids.contains(&id.as_str()));
    assert_eq!(queue["new"], 9);
    assert!(queue["next_due"].as_str().is_some_and(|t| t.contains('T')));

    let progress = call(&app, "GET", "/api/drills/progress", Some(&cookie), None).await.json();
    let learning: u64 = progress.as_array().unwrap().iter().map(|p| p["learning"].as_u64().unwrap()).sum();
    assert!(learning >= 1, "{progress}");

    // Someone else starts from scratch.
    let other = call(&app, "GET", "/api/drills/queue", None, None).await.json();
    assert_eq!(other["new"], 10);

    for (body, want) in [
        (serde_json::json!({"question": "nope", "rating": "good"}), "no question"),
        (serde_json::json!({"question": id, "rating": "perfect"}), "wrong shape"),
    ] {
        let bad = call(&app, "POST", "/api/drills/reviews", Some(&cookie), Some(body)).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert!(bad.body.contains(want), "{}", bad.body);
    }
    let bad = call(&app, "GET", "/api/drills/queue?new=500", Some(&cookie), None).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_mock_interview_gives_questions_without_answers_then_marks_key_points_as_a_hint() {
    let app = app();
    let mock = call(&app, "POST", "/api/drills/mock", None, Some(serde_json::json!({"count": 3, "seed": 42}))).await;
    assert_eq!(mock.status, StatusCode::OK, "{}", mock.body);
    assert!(!mock.body.contains("answer_html") && !mock.body.contains("key_points"), "no answers up front: {}", mock.body);
    let mock = mock.json();
    assert_eq!(mock["questions"].as_array().unwrap().len(), 3);
    assert_eq!(mock["seconds_per_question"], 120);
    assert_eq!(mock["seed"], 42);

    let checked = call(
        &app,
        "POST",
        "/api/drills/answers",
        None,
        Some(serde_json::json!({"question": "exit-code-137", "answer": "It is 128 + 9, SIGKILL. I would look at docker inspect."})),
    )
    .await;
    assert_eq!(checked.status, StatusCode::OK, "{}", checked.body);
    let checked = checked.json();
    let hits: Vec<bool> = checked["key_points"].as_array().unwrap().iter().map(|k| k["hit"].as_bool().unwrap()).collect();
    assert_eq!(hits, [true, false, true, false], "{checked}");
    assert_eq!((checked["hit"].as_u64(), checked["total"].as_u64()), (Some(2), Some(4)));
    assert!(checked["note"].as_str().unwrap().contains("hint, not a verdict"));
    assert!(checked["answer_html"].as_str().unwrap().contains("OOMKilled"));

    for (path, body) in [
        ("/api/drills/mock", serde_json::json!({"count": 0})),
        ("/api/drills/mock", serde_json::json!({"count": 3, "tags": ["cooking"]})),
        ("/api/drills/answers", serde_json::json!({"question": "nope", "answer": "x"})),
        ("/api/drills/answers", serde_json::json!({"question": "exit-code-137", "answer": "x".repeat(10_001)})),
    ] {
        let bad = call(&app, "POST", path, None, Some(body)).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{path}: {}", bad.body);
        assert!(bad.json()["error"].is_string());
    }
}

#[tokio::test]
async fn the_drill_pages_render() {
    let app = app();
    let hub = call(&app, "GET", "/drills", None, None).await;
    assert_eq!(hub.status, StatusCode::OK);
    assert!(hub.body.contains("<svg") && hub.body.contains("Networking"), "the progress chart");
    assert!(hub.body.contains("href=\"/drills/flashcards\"") && hub.body.contains("href=\"/drills/mock\""));
    assert!(hub.body.contains("/lessons/day-29?exercise=private-registry"), "practical questions link to their lab");
    let cards = call(&app, "GET", "/drills/flashcards", None, None).await;
    assert_eq!(cards.status, StatusCode::OK);
    assert!(cards.body.contains("/static/drills.js") && cards.body.contains("id=\"flashcard\""));
    let mock = call(&app, "GET", "/drills/mock", None, None).await;
    assert_eq!(mock.status, StatusCode::OK);
    assert!(mock.body.contains("hint, not a verdict") && mock.body.contains("id=\"mock-setup\""));
}
