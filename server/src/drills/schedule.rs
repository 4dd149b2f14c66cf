//! Spaced repetition for the flashcards: SM-2 with Anki's four buttons, a daily queue, progress
//! by tag, and the mix of questions for a mock interview. Pure functions of their inputs and of
//! `now` (Unix seconds), so tests use fixed clocks.
//!
//! The schedule, per card:
//! - **again**: the answer was not there. The card starts over (a *lapse* if it had been
//!   learned), comes back in 10 minutes, and gets harder (ease − 0.20).
//! - **hard**: recalled with effort. 1 day the first time, then 1.2 × the last interval;
//!   ease − 0.15.
//! - **good**: 1 day, then 6 days, then the last interval × ease (SM-2).
//! - **easy**: like good, with a bonus of 1.3 × and ease + 0.15 (4 days the first time).
//!
//! Ease starts at 2.5 and never falls below 1.3; intervals never exceed a year. A card whose
//! interval reached 21 days counts as *mature*.

use std::collections::{BTreeMap, HashMap};

use lessons::questions::{Difficulty, Question, Tag};
use serde::{Deserialize, Serialize};

use crate::store::{CardRow, RatingRow};

pub const DAY_S: i64 = 86_400;
/// When a card rated "again" comes back.
pub const RELEARN_DELAY_S: i64 = 10 * 60;
pub const START_EASE: f64 = 2.5;
pub const MIN_EASE: f64 = 1.3;
pub const MAX_INTERVAL_DAYS: u32 = 365;
/// From this interval on, a card counts as mature.
pub const MATURE_DAYS: u32 = 21;
/// New cards a learner meets per day, unless they ask for more.
pub const DEFAULT_NEW_PER_DAY: usize = 10;

/// The learner's answer to "how well did you recall it?".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rating {
    Again,
    Hard,
    Good,
    Easy,
}

impl Rating {
    pub fn as_str(self) -> &'static str {
        match self {
            Rating::Again => "again",
            Rating::Hard => "hard",
            Rating::Good => "good",
            Rating::Easy => "easy",
        }
    }

    pub fn parse(s: &str) -> Option<Rating> {
        [Rating::Again, Rating::Hard, Rating::Good, Rating::Easy].into_iter().find(|r| r.as_str() == s)
    }
}

/// One learner's schedule for one question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Card {
    /// Successful recalls in a row (reset by "again").
    pub reps: u32,
    /// Times a learned card was forgotten.
    pub lapses: u32,
    pub ease: f64,
    pub interval_days: u32,
    /// When it is next due (Unix seconds).
    pub due: i64,
    pub first_review: i64,
    pub last_review: i64,
}

impl From<Rating> for RatingRow {
    fn from(rating: Rating) -> RatingRow {
        RatingRow(rating.as_str())
    }
}

impl From<&Card> for CardRow {
    fn from(c: &Card) -> CardRow {
        CardRow {
            reps: c.reps,
            lapses: c.lapses,
            ease: c.ease,
            interval_days: c.interval_days,
            due: c.due,
            first_review: c.first_review,
            last_review: c.last_review,
        }
    }
}

impl From<CardRow> for Card {
    fn from(r: CardRow) -> Card {
        Card {
            reps: r.reps,
            lapses: r.lapses,
            ease: r.ease,
            interval_days: r.interval_days,
            due: r.due,
            first_review: r.first_review,
            last_review: r.last_review,
        }
    }
}

impl Card {
    /// A card never reviewed.
    pub fn unseen() -> Card {
        Card { reps: 0, lapses: 0, ease: START_EASE, interval_days: 0, due: 0, first_review: 0, last_review: 0 }
    }

    pub fn is_due(&self, now: i64) -> bool {
        self.due <= now
    }

    pub fn is_mature(&self) -> bool {
        self.interval_days >= MATURE_DAYS
    }

    /// The card after a review rated `rating` at `now`.
    pub fn review(&self, rating: Rating, now: i64) -> Card {
        let mut next = self.clone();
        if self.first_review == 0 {
            next.first_review = now;
        }
        next.last_review = now;
        let good_interval = match self.reps {
            0 => 1,
            1 => 6,
            _ => grow(self.interval_days, self.ease),
        };
        match rating {
            Rating::Again => {
                if self.reps > 0 {
                    next.lapses += 1;
                }
                next.reps = 0;
                next.interval_days = 0;
                next.ease = (self.ease - 0.20).max(MIN_EASE);
                next.due = now + RELEARN_DELAY_S;
                return next;
            }
            Rating::Hard => {
                next.interval_days = match self.reps {
                    0 => 1,
                    _ => grow(self.interval_days, 1.2),
                };
                next.ease = (self.ease - 0.15).max(MIN_EASE);
            }
            Rating::Good => next.interval_days = good_interval,
            Rating::Easy => {
                next.interval_days = match self.reps {
                    0 => 4,
                    _ => grow(good_interval, 1.3),
                };
                next.ease = self.ease + 0.15;
            }
        }
        next.reps += 1;
        next.interval_days = next.interval_days.clamp(1, MAX_INTERVAL_DAYS);
        next.due = now + i64::from(next.interval_days) * DAY_S;
        next
    }
}

/// `interval × factor`, rounded, and always at least one day longer.
fn grow(interval: u32, factor: f64) -> u32 {
    let grown = (f64::from(interval.max(1)) * factor).round() as u32;
    grown.max(interval + 1)
}

/// Where a question stands for a learner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    New,
    Learning,
    Mature,
}

pub fn stage(card: Option<&Card>) -> Stage {
    match card {
        None => Stage::New,
        Some(c) if c.is_mature() => Stage::Mature,
        Some(_) => Stage::Learning,
    }
}

/// Midnight at the start of the learner's day containing `now`; `offset_min` is their UTC offset
/// in minutes (east positive: +60 for Paris in winter).
pub fn day_start(now: i64, offset_min: i32) -> i64 {
    let offset = i64::from(offset_min) * 60;
    (now + offset).div_euclid(DAY_S) * DAY_S - offset
}

/// Today's flashcards: every due card, most overdue first, then as many new questions as the
/// daily allowance still permits, spread over the tags.
#[derive(Debug, Clone)]
pub struct DailyQueue<'a> {
    pub due: Vec<&'a Question>,
    pub new: Vec<&'a Question>,
    /// When the next card not in this queue becomes due, if any.
    pub next_due: Option<i64>,
}

pub fn daily_queue<'a>(
    bank: &'a [Question],
    cards: &HashMap<String, Card>,
    now: i64,
    today_start: i64,
    new_per_day: usize,
    tag: Option<Tag>,
) -> DailyQueue<'a> {
    let in_scope = |q: &&Question| tag.is_none_or(|t| q.has_tag(t));
    let mut due: Vec<(&Question, i64)> = bank
        .iter()
        .filter(in_scope)
        .filter_map(|q| cards.get(&q.id).filter(|c| c.is_due(now)).map(|c| (q, c.due)))
        .collect();
    due.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.id.cmp(&b.0.id)));
    let next_due = bank
        .iter()
        .filter(in_scope)
        .filter_map(|q| cards.get(&q.id))
        .filter(|c| !c.is_due(now))
        .map(|c| c.due)
        .min();

    let met_today = cards.values().filter(|c| c.first_review >= today_start).count();
    let allowance = new_per_day.saturating_sub(met_today);
    let unseen: Vec<&Question> = bank.iter().filter(in_scope).filter(|q| !cards.contains_key(&q.id)).collect();
    DailyQueue { due: due.into_iter().map(|(q, _)| q).collect(), new: spread_over_tags(unseen, allowance), next_due }
}

/// Up to `n` of `questions`, taking each tag in turn, easiest first within a tag (then in bank
/// order), so a day's new cards are not all about one thing.
fn spread_over_tags(questions: Vec<&Question>, n: usize) -> Vec<&Question> {
    let mut by_tag: BTreeMap<Tag, Vec<&Question>> = BTreeMap::new();
    for q in questions {
        by_tag.entry(q.primary_tag()).or_default().push(q);
    }
    for list in by_tag.values_mut() {
        list.sort_by_key(|q| q.difficulty); // stable: bank order within a difficulty
        list.reverse(); // pop from the end
    }
    let mut out = Vec::new();
    while out.len() < n && by_tag.values().any(|l| !l.is_empty()) {
        for list in by_tag.values_mut() {
            if out.len() == n {
                break;
            }
            if let Some(q) = list.pop() {
                out.push(q);
            }
        }
    }
    out
}

/// How far a learner has got with one tag's questions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TagProgress {
    pub tag: Tag,
    pub total: usize,
    pub new: usize,
    pub learning: usize,
    pub mature: usize,
    pub due: usize,
}

/// Per tag (every tag of a question counts), in the order of [`Tag::ALL`].
pub fn progress_by_tag(bank: &[Question], cards: &HashMap<String, Card>, now: i64) -> Vec<TagProgress> {
    Tag::ALL
        .iter()
        .map(|&tag| {
            let mut p = TagProgress { tag, total: 0, new: 0, learning: 0, mature: 0, due: 0 };
            for q in bank.iter().filter(|q| q.has_tag(tag)) {
                p.total += 1;
                let card = cards.get(&q.id);
                match stage(card) {
                    Stage::New => p.new += 1,
                    Stage::Learning => p.learning += 1,
                    Stage::Mature => p.mature += 1,
                }
                if card.is_some_and(|c| c.is_due(now)) {
                    p.due += 1;
                }
            }
            p
        })
        .collect()
}

/// `n` questions for a mock interview, mixed by tag and difficulty: each pick is the first (in
/// an order shuffled by `seed`) whose tag, then difficulty, has been picked least so far.
pub fn mock_interview<'a>(bank: &'a [Question], n: usize, tags: &[Tag], seed: u64) -> Vec<&'a Question> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut pool: Vec<&Question> = bank.iter().filter(|q| tags.is_empty() || tags.iter().any(|t| q.has_tag(*t))).collect();
    pool.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    let mut tag_count: HashMap<Tag, usize> = HashMap::new();
    let mut difficulty_count: HashMap<Difficulty, usize> = HashMap::new();
    let mut picked = Vec::with_capacity(n.min(pool.len()));
    while picked.len() < n && !pool.is_empty() {
        let score = |q: &Question| {
            let tag = tag_count.get(&q.primary_tag()).copied().unwrap_or(0);
            let difficulty = difficulty_count.get(&q.difficulty).copied().unwrap_or(0);
            (tag, difficulty)
        };
        let best = (0..pool.len()).min_by_key(|&i| (score(pool[i]), i)).expect("the pool is not empty");
        let q = pool.remove(best);
        *tag_count.entry(q.primary_tag()).or_default() += 1;
        *difficulty_count.entry(q.difficulty).or_default() += 1;
        picked.push(q);
    }
    picked
}
