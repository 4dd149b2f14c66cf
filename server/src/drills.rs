//! Interview drills (day 29): the hub, flashcards with spaced repetition, mock interviews.
//!
//! Pages: `GET /drills`, `/drills/flashcards`, `/drills/mock`. API:
//! - `GET /api/drills/questions` the bank without answers (`?tag=`, `?difficulty=` filter);
//! - `GET /api/drills/queue` today's flashcards for the learner, with answers (self-graded);
//! - `POST /api/drills/reviews` `{"question","rating"}` rates a card and returns its schedule;
//! - `GET /api/drills/progress` per-tag counts of new, learning and mature cards;
//! - `POST /api/drills/mock` `{"count","tags"?,"seed"?}` questions for a mock interview;
//! - `POST /api/drills/answers` `{"question","answer"}` the model answer and which key points
//!   the typed answer seems to mention (a hint, never a verdict).
//!
//! The learner is the anonymous cookie's ([`crate::store::CurrentLearner`]); schedules are kept
//! in the progress store ([`crate::store::DrillStore`]).

pub mod schedule;

use std::collections::HashMap;

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use lessons::questions::{Difficulty, Question, Tag};
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::error::AppError;
use crate::extract::{Json, Query};
use crate::store::CurrentLearner;
use schedule::{Card, Rating, Stage, TagProgress};

/// Most questions one mock interview may have.
pub const MAX_MOCK_QUESTIONS: usize = 20;
/// Longest typed answer accepted, in characters.
pub const MAX_ANSWER_CHARS: usize = 10_000;
/// Seconds per question in a mock interview unless the learner picks otherwise.
pub const DEFAULT_SECONDS_PER_QUESTION: u32 = 120;
/// Said with every key-point match, on the page and in the API.
pub const HINT_NOT_VERDICT: &str = "Key points are matched by words, so this is a hint, not a verdict: \
you may have made a point in other words, or named a word without explaining it. Judge your answer yourself.";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/drills", get(hub_page))
        .route("/drills/flashcards", get(flashcards_page))
        .route("/drills/mock", get(mock_page))
        .route("/api/drills/questions", get(api_questions))
        .route("/api/drills/queue", get(api_queue))
        .route("/api/drills/reviews", post(api_review))
        .route("/api/drills/progress", get(api_progress))
        .route("/api/drills/mock", post(api_mock))
        .route("/api/drills/answers", post(api_answer))
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn cards_of(learner: &CurrentLearner) -> Result<HashMap<String, Card>, AppError> {
    let rows = learner.store.cards(&learner.id).map_err(AppError::internal)?;
    Ok(rows.into_iter().map(|(question, row)| (question, Card::from(row))).collect())
}

fn parse_tag(s: &str) -> Result<Tag, AppError> {
    Tag::parse(s).ok_or_else(|| {
        let all: Vec<&str> = Tag::ALL.iter().map(|t| t.as_str()).collect();
        AppError::BadRequest(format!("there is no tag {s:?}; the tags are {}", all.join(", ")))
    })
}

fn unknown_question(id: &str) -> AppError {
    AppError::BadRequest(format!("there is no question {id:?} in the bank (see GET /api/drills/questions)"))
}

// ---- pages ------------------------------------------------------------------------------

/// One row of the progress chart, in SVG user units (the bar is 300 wide).
pub struct ChartRow {
    pub progress: TagProgress,
    pub label: &'static str,
    pub y: u32,
    pub mature_w: f64,
    pub learning_w: f64,
    pub new_w: f64,
}

const CHART_BAR_W: f64 = 300.0;
const CHART_ROW_H: u32 = 34;

fn chart(progress: Vec<TagProgress>) -> Vec<ChartRow> {
    progress
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let w = |n: usize| if p.total == 0 { 0.0 } else { (n as f64 / p.total as f64 * CHART_BAR_W * 10.0).round() / 10.0 };
            ChartRow {
                label: p.tag.label(),
                y: i as u32 * CHART_ROW_H,
                mature_w: w(p.mature),
                learning_w: w(p.learning),
                new_w: w(p.new),
                progress: p,
            }
        })
        .collect()
}

pub struct PracticalLink<'a> {
    pub exercise: &'a lessons::Exercise,
    pub done: usize,
    pub questions: Vec<&'a Question>,
}

#[derive(Template)]
#[template(path = "drills.html")]
struct HubPage<'a> {
    total: usize,
    due: usize,
    new_today: usize,
    mature: usize,
    chart: Vec<ChartRow>,
    chart_height: u32,
    practicals: Vec<PracticalLink<'a>>,
    tags: &'static [Tag],
}

#[derive(Template)]
#[template(path = "drills_flashcards.html")]
struct FlashcardsPage {
    tags: &'static [Tag],
}

#[derive(Template)]
#[template(path = "drills_mock.html")]
struct MockPage {
    tags: &'static [Tag],
    hint_not_verdict: &'static str,
    max_questions: usize,
}

fn render(template: &impl Template) -> Response {
    crate::pages::render(template, StatusCode::OK)
}

async fn hub_page(State(state): State<AppState>, Extension(learner): Extension<CurrentLearner>) -> Result<Response, AppError> {
    let bank = state.catalog.questions();
    let cards = cards_of(&learner)?;
    let now = now();
    let queue = schedule::daily_queue(bank, &cards, now, schedule::day_start(now, 0), schedule::DEFAULT_NEW_PER_DAY, None);
    let progress = learner.progress();
    let practicals = state
        .catalog
        .lesson("day-29")
        .map(|lesson| {
            lesson
                .exercises
                .iter()
                .map(|exercise| PracticalLink {
                    exercise,
                    done: progress.done_count(exercise.tasks.iter().map(|t| (exercise.id.as_str(), t.id.as_str()))),
                    questions: bank.iter().filter(|q| q.practical.as_deref() == Some(exercise.id.as_str())).collect(),
                })
                .collect()
        })
        .unwrap_or_default();
    let rows = chart(schedule::progress_by_tag(bank, &cards, now));
    Ok(render(&HubPage {
        total: bank.len(),
        due: queue.due.len(),
        new_today: queue.new.len(),
        mature: bank.iter().filter(|q| schedule::stage(cards.get(&q.id)) == Stage::Mature).count(),
        chart_height: rows.len() as u32 * CHART_ROW_H,
        chart: rows,
        practicals,
        tags: &Tag::ALL,
    }))
}

async fn flashcards_page() -> Response {
    render(&FlashcardsPage { tags: &Tag::ALL })
}

async fn mock_page() -> Response {
    render(&MockPage { tags: &Tag::ALL, hint_not_verdict: HINT_NOT_VERDICT, max_questions: MAX_MOCK_QUESTIONS })
}

// ---- API --------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QuestionsQuery {
    tag: Option<String>,
    difficulty: Option<Difficulty>,
}

async fn api_questions(State(state): State<AppState>, Query(query): Query<QuestionsQuery>) -> Result<Response, AppError> {
    let tag = query.tag.as_deref().map(parse_tag).transpose()?;
    let list: Vec<_> = state
        .catalog
        .questions()
        .iter()
        .filter(|q| tag.is_none_or(|t| q.has_tag(t)))
        .filter(|q| query.difficulty.is_none_or(|d| q.difficulty == d))
        .map(Question::summary)
        .collect();
    Ok(axum::Json(list).into_response())
}

/// A flashcard as the page shows it: question, answer and key points (self-graded, so nothing
/// is secret here), and where the learner stands with it.
#[derive(Debug, Serialize)]
struct CardView<'a> {
    id: &'a str,
    question: &'a str,
    question_html: &'a str,
    answer_html: &'a str,
    key_points: Vec<&'a str>,
    tags: &'a [Tag],
    difficulty: Difficulty,
    day: u32,
    practical: Option<&'a str>,
    stage: Stage,
    card: Option<&'a Card>,
}

fn card_view<'a>(q: &'a Question, cards: &'a HashMap<String, Card>) -> CardView<'a> {
    let card = cards.get(&q.id);
    CardView {
        id: &q.id,
        question: &q.question,
        question_html: &q.question_html,
        answer_html: &q.answer_html,
        key_points: q.key_points.iter().map(|k| k.point_html.as_str()).collect(),
        tags: &q.tags,
        difficulty: q.difficulty,
        day: q.day,
        practical: q.practical.as_deref(),
        stage: schedule::stage(card),
        card,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueQuery {
    tag: Option<String>,
    /// New cards per day (0 to 50); 10 by default.
    new: Option<usize>,
    /// The learner's UTC offset in minutes, east positive, so "today" is their day.
    tz: Option<i32>,
}

async fn api_queue(
    State(state): State<AppState>,
    Extension(learner): Extension<CurrentLearner>,
    Query(query): Query<QueueQuery>,
) -> Result<Response, AppError> {
    let tag = query.tag.as_deref().map(parse_tag).transpose()?;
    let new_per_day = query.new.unwrap_or(schedule::DEFAULT_NEW_PER_DAY);
    if new_per_day > 50 {
        return Err(AppError::BadRequest("`new` must be 0 to 50 new cards a day".into()));
    }
    let tz = query.tz.unwrap_or(0);
    if !(-14 * 60..=14 * 60).contains(&tz) {
        return Err(AppError::BadRequest("`tz` is a UTC offset in minutes, -840 to 840".into()));
    }
    let cards = cards_of(&learner)?;
    let now = now();
    let queue = schedule::daily_queue(state.catalog.questions(), &cards, now, schedule::day_start(now, tz), new_per_day, tag);
    let body = serde_json::json!({
        "due": queue.due.len(),
        "new": queue.new.len(),
        "next_due": queue.next_due.map(rfc3339),
        "cards": queue.due.iter().chain(&queue.new).map(|q| card_view(q, &cards)).collect::<Vec<_>>(),
    });
    Ok(axum::Json(body).into_response())
}

fn rfc3339(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| t.to_string())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewBody {
    question: String,
    rating: Rating,
}

async fn api_review(
    State(state): State<AppState>,
    Extension(learner): Extension<CurrentLearner>,
    Json(body): Json<ReviewBody>,
) -> Result<Response, AppError> {
    if state.catalog.question(&body.question).is_none() {
        return Err(unknown_question(&body.question));
    }
    let cards = cards_of(&learner)?;
    let card = cards.get(&body.question).cloned().unwrap_or_else(Card::unseen).review(body.rating, now());
    learner.store.save_review(&learner.id, &body.question, body.rating.into(), &(&card).into()).map_err(AppError::internal)?;
    let body = serde_json::json!({
        "question": body.question,
        "rating": body.rating,
        "due_at": rfc3339(card.due),
        "stage": schedule::stage(Some(&card)),
        "card": card,
    });
    Ok(axum::Json(body).into_response())
}

async fn api_progress(State(state): State<AppState>, Extension(learner): Extension<CurrentLearner>) -> Result<Response, AppError> {
    let cards = cards_of(&learner)?;
    Ok(axum::Json(schedule::progress_by_tag(state.catalog.questions(), &cards, now())).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MockBody {
    count: usize,
    #[serde(default)]
    tags: Vec<String>,
    /// Seconds per question (30 to 900).
    seconds_per_question: Option<u32>,
    /// Makes the pick repeatable (tests, sharing a set); random otherwise.
    seed: Option<u64>,
}

#[derive(Debug, Serialize)]
struct MockQuestion<'a> {
    id: &'a str,
    question: &'a str,
    question_html: &'a str,
    tags: &'a [Tag],
    difficulty: Difficulty,
    day: u32,
    practical: Option<&'a str>,
}

async fn api_mock(State(state): State<AppState>, Json(body): Json<MockBody>) -> Result<Response, AppError> {
    if !(1..=MAX_MOCK_QUESTIONS).contains(&body.count) {
        return Err(AppError::BadRequest(format!("`count` must be 1 to {MAX_MOCK_QUESTIONS} questions")));
    }
    let seconds = body.seconds_per_question.unwrap_or(DEFAULT_SECONDS_PER_QUESTION);
    if !(30..=900).contains(&seconds) {
        return Err(AppError::BadRequest("`seconds_per_question` must be 30 to 900".into()));
    }
    let tags = body.tags.iter().map(|t| parse_tag(t)).collect::<Result<Vec<_>, _>>()?;
    let seed = body.seed.unwrap_or_else(rand::random);
    let picked = schedule::mock_interview(state.catalog.questions(), body.count, &tags, seed);
    let questions: Vec<MockQuestion> = picked
        .iter()
        .map(|q| MockQuestion {
            id: &q.id,
            question: &q.question,
            question_html: &q.question_html,
            tags: &q.tags,
            difficulty: q.difficulty,
            day: q.day,
            practical: q.practical.as_deref(),
        })
        .collect();
    let body = serde_json::json!({ "seed": seed, "seconds_per_question": seconds, "questions": questions });
    Ok(axum::Json(body).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AnswerBody {
    question: String,
    answer: String,
}

async fn api_answer(State(state): State<AppState>, Json(body): Json<AnswerBody>) -> Result<Response, AppError> {
    let q = state.catalog.question(&body.question).ok_or_else(|| unknown_question(&body.question))?;
    if body.answer.chars().count() > MAX_ANSWER_CHARS {
        return Err(AppError::BadRequest(format!("the answer is longer than {MAX_ANSWER_CHARS} characters")));
    }
    let matches = q.match_key_points(&body.answer);
    let hit = matches.iter().filter(|m| m.hit).count();
    let body = serde_json::json!({
        "question": q.id,
        "answer_html": q.answer_html,
        "key_points": matches.iter().map(|m| serde_json::json!({"point": m.point, "point_html": m.point_html, "hit": m.hit})).collect::<Vec<_>>(),
        "hit": hit,
        "total": matches.len(),
        "note": HINT_NOT_VERDICT,
        "practical": q.practical,
    });
    Ok(axum::Json(body).into_response())
}

#[cfg(test)]
mod tests;
