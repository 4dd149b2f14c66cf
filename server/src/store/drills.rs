//! The flashcard schedules: one row per (learner, question) in `drill_cards`, and every rating
//! in `drill_reviews` (kept for statistics and to rebuild schedules if the algorithm changes).
//! The tables are created with `IF NOT EXISTS`, so opening an older database adds them.

use std::collections::HashMap;

use rusqlite::params;

use super::{SqliteStore, StoreError};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS drill_cards (
    learner TEXT NOT NULL REFERENCES learners(id),
    question TEXT NOT NULL,
    reps INTEGER NOT NULL,
    lapses INTEGER NOT NULL,
    ease REAL NOT NULL,
    interval_days INTEGER NOT NULL,
    due INTEGER NOT NULL,
    first_review INTEGER NOT NULL,
    last_review INTEGER NOT NULL,
    PRIMARY KEY (learner, question)
);
CREATE TABLE IF NOT EXISTS drill_reviews (
    learner TEXT NOT NULL REFERENCES learners(id),
    question TEXT NOT NULL,
    rating TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS drill_reviews_by_learner ON drill_reviews (learner, at);
";

/// One card's schedule as stored in `drill_cards` (the scheduler's card converts to and from it in
/// `drills::schedule`, so the store does not depend on the scheduler).
#[derive(Debug, Clone, PartialEq)]
pub struct CardRow {
    pub reps: u32,
    pub lapses: u32,
    pub ease: f64,
    pub interval_days: u32,
    /// Unix seconds, as every time in these tables.
    pub due: i64,
    pub first_review: i64,
    pub last_review: i64,
}

/// A rating as stored in `drill_reviews.rating`: its name ("again", "hard", "good" or "easy").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RatingRow(pub &'static str);

/// Where flashcard schedules are kept. Part of [`super::ProgressStore`].
pub trait DrillStore: Send + Sync {
    /// Every card the learner has reviewed, by question id.
    fn cards(&self, learner: &str) -> Result<HashMap<String, CardRow>, StoreError>;
    /// Records a review: the rating, and the card's new schedule.
    fn save_review(&self, learner: &str, question: &str, rating: RatingRow, card: &CardRow) -> Result<(), StoreError>;
}

impl DrillStore for SqliteStore {
    fn cards(&self, learner: &str) -> Result<HashMap<String, CardRow>, StoreError> {
        let conn = self.conn();
        let query_err = |source| StoreError::Query { what: "reading flashcards", learner: learner.to_owned(), source };
        let mut stmt = conn
            .prepare(
                "SELECT question, reps, lapses, ease, interval_days, due, first_review, last_review
                 FROM drill_cards WHERE learner = ?1",
            )
            .map_err(query_err)?;
        let rows = stmt
            .query_map(params![learner], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    CardRow {
                        reps: r.get(1)?,
                        lapses: r.get(2)?,
                        ease: r.get(3)?,
                        interval_days: r.get(4)?,
                        due: r.get(5)?,
                        first_review: r.get(6)?,
                        last_review: r.get(7)?,
                    },
                ))
            })
            .map_err(query_err)?;
        rows.collect::<Result<HashMap<_, _>, _>>().map_err(query_err)
    }

    fn save_review(&self, learner: &str, question: &str, rating: RatingRow, card: &CardRow) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let query_err = |source| StoreError::Query { what: "recording a flashcard review", learner: learner.to_owned(), source };
        let tx = conn.transaction().map_err(query_err)?;
        tx.execute(
            "INSERT OR IGNORE INTO learners (id, created_at) VALUES (?1, ?2)",
            params![learner, super::now()],
        )
        .map_err(query_err)?;
        tx.execute(
            "INSERT INTO drill_cards (learner, question, reps, lapses, ease, interval_days, due, first_review, last_review)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (learner, question) DO UPDATE SET reps = ?3, lapses = ?4, ease = ?5, interval_days = ?6,
                 due = ?7, first_review = ?8, last_review = ?9",
            params![learner, question, card.reps, card.lapses, card.ease, card.interval_days, card.due, card.first_review, card.last_review],
        )
        .map_err(query_err)?;
        tx.execute(
            "INSERT INTO drill_reviews (learner, question, rating, at) VALUES (?1, ?2, ?3, ?4)",
            params![learner, question, rating.0, card.last_review],
        )
        .map_err(query_err)?;
        tx.commit().map_err(query_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drills::schedule::{Card, Rating};
    use crate::store::ProgressStore;

    fn save(store: &SqliteStore, learner: &str, question: &str, rating: Rating, card: &Card) {
        store.save_review(learner, question, rating.into(), &card.into()).unwrap();
    }

    #[test]
    fn reviews_are_kept_per_learner_and_survive_reopening_an_older_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docklab.db");
        {
            // A database from before the drills: only the progress tables.
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch("CREATE TABLE learners (id TEXT PRIMARY KEY, display_name TEXT, created_at TEXT NOT NULL);").unwrap();
        }
        let t0 = 1_700_000_000;
        {
            let store = SqliteStore::open(&path).unwrap();
            let card = Card::unseen().review(Rating::Good, t0);
            save(&store, "l1", "copy-vs-add", Rating::Good, &card);
            let card = card.review(Rating::Good, t0 + 86_400);
            save(&store, "l1", "copy-vs-add", Rating::Good, &card);
            save(&store, "l2", "what-is-docker", Rating::Again, &Card::unseen().review(Rating::Again, t0));
        }
        let store = SqliteStore::open(&path).unwrap();
        SqliteStore::open(&path).unwrap(); // opening again changes nothing
        let cards = store.cards("l1").unwrap();
        assert_eq!(cards.len(), 1);
        let card = &cards["copy-vs-add"];
        assert_eq!((card.reps, card.interval_days, card.first_review), (2, 6, t0));
        assert_eq!(card.due, t0 + 86_400 + 6 * 86_400);
        assert_eq!(store.cards("l2").unwrap()["what-is-docker"].reps, 0);
        assert!(store.cards("nobody").unwrap().is_empty());
        // Reviews create the learner row, as other progress does.
        assert_eq!(store.progress("l1").unwrap(), crate::store::Progress::default());
    }
}
