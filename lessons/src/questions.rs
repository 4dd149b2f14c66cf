//! The interview question bank (day 29): questions with model answers, key points, tags,
//! difficulty and the course day each comes from.
//!
//! Content lives in the day-29 folder, one file per tag:
//! ```text
//! lessons/day-29-interview/questions/networking.toml
//! ```
//! ```toml
//! [[questions]]
//! id = "default-vs-custom-bridge"          # unique across the whole bank
//! day = 28                                  # the course day it comes from (24 to 30)
//! difficulty = "medium"                     # easy | medium | hard
//! also = ["security"]                       # tags besides the file's own (optional)
//! scenario = true                           # a "what would you do" question (optional)
//! practical = "day-29/isolate-payments"     # an exercise that answers it by doing (optional)
//! question = "How does the default bridge differ from a user-defined bridge?"
//! answer = """Markdown…"""
//! key_points = [
//!   { point = "Only user-defined bridges resolve container names", match = ["dns", "by name"] },
//! ]
//! ```
//! A key point is *hit* by a typed answer when any of its `match` terms appears in it. Matching
//! ignores case and punctuation; a term must start at the start of a word but may end inside one
//! (`isolat` matches "isolation") unless it ends with a space (`"d "` is only the word d, as in
//! `-d`); `a & b` needs both `a` and `b`. It is a hint for the learner,
//! never a verdict: the same idea can be said in words no list foresees.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::ContentError;
use crate::markdown;

/// What a question is about. Every question has at least the tag of the file it is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tag {
    Basics,
    Images,
    Storage,
    Networking,
    Security,
    Orchestration,
    Troubleshooting,
}

impl Tag {
    pub const ALL: [Tag; 7] = [
        Tag::Basics,
        Tag::Images,
        Tag::Storage,
        Tag::Networking,
        Tag::Security,
        Tag::Orchestration,
        Tag::Troubleshooting,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Tag::Basics => "basics",
            Tag::Images => "images",
            Tag::Storage => "storage",
            Tag::Networking => "networking",
            Tag::Security => "security",
            Tag::Orchestration => "orchestration",
            Tag::Troubleshooting => "troubleshooting",
        }
    }

    pub fn parse(s: &str) -> Option<Tag> {
        Tag::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// For headings: `Basics`, `Troubleshooting`.
    pub fn label(self) -> &'static str {
        match self {
            Tag::Basics => "Basics",
            Tag::Images => "Images",
            Tag::Storage => "Storage",
            Tag::Networking => "Networking",
            Tag::Security => "Security",
            Tag::Orchestration => "Orchestration",
            Tag::Troubleshooting => "Troubleshooting",
        }
    }
}

impl std::fmt::Display for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Difficulty {
    Easy,
    Medium,
    Hard,
}

impl Difficulty {
    pub const ALL: [Difficulty; 3] = [Difficulty::Easy, Difficulty::Medium, Difficulty::Hard];

    pub fn as_str(self) -> &'static str {
        match self {
            Difficulty::Easy => "easy",
            Difficulty::Medium => "medium",
            Difficulty::Hard => "hard",
        }
    }
}

/// Something a good answer mentions.
#[derive(Debug, Clone, Serialize)]
pub struct KeyPoint {
    /// As shown to the learner (Markdown allowed).
    pub point: String,
    #[serde(skip)]
    pub point_html: String,
    /// Alternatives; any one present in a typed answer hits the point.
    #[serde(rename = "match")]
    pub terms: Vec<String>,
}

/// One interview question with its model answer.
#[derive(Debug, Clone, Serialize)]
pub struct Question {
    pub id: String,
    pub day: u32,
    pub difficulty: Difficulty,
    /// The file's tag first, then the others.
    pub tags: Vec<Tag>,
    pub scenario: bool,
    /// An exercise (`day-29/oom-killed`) that answers the question by doing.
    pub practical: Option<String>,
    pub question: String,
    #[serde(skip)]
    pub question_html: String,
    pub answer: String,
    #[serde(skip)]
    pub answer_html: String,
    pub key_points: Vec<KeyPoint>,
}

/// What `GET /api/drills/questions` lists: everything but the answer and its key points.
#[derive(Debug, Clone, Serialize)]
pub struct QuestionSummary<'a> {
    pub id: &'a str,
    pub question: &'a str,
    pub tags: &'a [Tag],
    pub difficulty: Difficulty,
    pub day: u32,
    pub scenario: bool,
    pub practical: Option<&'a str>,
}

/// A key point and whether a typed answer seems to mention it.
#[derive(Debug, Clone, Serialize)]
pub struct PointMatch<'a> {
    pub point: &'a str,
    #[serde(skip)]
    pub point_html: &'a str,
    pub hit: bool,
}

impl Question {
    pub fn summary(&self) -> QuestionSummary<'_> {
        QuestionSummary {
            id: &self.id,
            question: &self.question,
            tags: &self.tags,
            difficulty: self.difficulty,
            day: self.day,
            scenario: self.scenario,
            practical: self.practical.as_deref(),
        }
    }

    pub fn has_tag(&self, tag: Tag) -> bool {
        self.tags.contains(&tag)
    }

    /// The tag whose file holds the question.
    pub fn primary_tag(&self) -> Tag {
        self.tags[0]
    }

    /// Which key points the typed answer seems to mention (see the module docs: a hint only).
    pub fn match_key_points(&self, typed: &str) -> Vec<PointMatch<'_>> {
        let text = normalize(typed);
        self.key_points
            .iter()
            .map(|k| PointMatch {
                point: &k.point,
                point_html: &k.point_html,
                hit: k.terms.iter().any(|term| term_matches(&text, term)),
            })
            .collect()
    }
}

/// Lowercase words separated by single spaces, with a space at each end, so that
/// `" term"` finds a term at the start of a word.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push(' ');
    for c in text.chars() {
        if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
        } else if !out.ends_with(' ') {
            out.push(' ');
        }
    }
    if !out.ends_with(' ') {
        out.push(' ');
    }
    out
}

/// Whether `term` (`a & b` for both) is in `text`, already [`normalize`]d. A part ending in a
/// space must end where a word ends (`"d "` is the word d, not every word starting with d).
fn term_matches(text: &str, term: &str) -> bool {
    term.split(" & ").all(|part| {
        let whole_word = part.ends_with(' ');
        let normalized = normalize(part);
        let needle = if whole_word { normalized.as_str() } else { normalized.trim_end() };
        !needle.trim().is_empty() && text.contains(needle)
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QuestionsFile {
    questions: Vec<toml::Spanned<QuestionEntry>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QuestionEntry {
    id: String,
    day: u32,
    difficulty: Difficulty,
    #[serde(default)]
    also: Vec<Tag>,
    #[serde(default)]
    scenario: bool,
    practical: Option<String>,
    question: String,
    answer: String,
    key_points: Vec<KeyPointEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyPointEntry {
    point: String,
    #[serde(rename = "match")]
    terms: Vec<String>,
}

/// Fewest key points a question may have: one point would make the hint all-or-nothing.
pub const MIN_KEY_POINTS: usize = 2;

/// Parses one `questions/<tag>.toml`. Exercise references are checked later, by the catalog.
pub(crate) fn parse_file(path: &Path, stem: &str, text: &str) -> Result<Vec<Question>, ContentError> {
    let file_tag = Tag::parse(stem).ok_or_else(|| ContentError::BadQuestionFile {
        path: path.to_owned(),
        name: stem.to_owned(),
        tags: Tag::ALL.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", "),
    })?;
    let file: QuestionsFile = toml::from_str(text).map_err(|source| ContentError::QuestionToml {
        path: path.to_owned(),
        source,
    })?;
    let mut questions = Vec::with_capacity(file.questions.len());
    for spanned in file.questions {
        let line = crate::line_of(text, spanned.span().start);
        let entry = spanned.into_inner();
        let bad = |reason: String| ContentError::BadQuestion {
            path: path.to_owned(),
            line,
            id: entry.id.clone(),
            reason,
        };
        if !crate::is_valid_id(&entry.id) {
            return Err(bad("the id may only contain lowercase letters, digits and `-`".into()));
        }
        if !crate::DAYS.contains(&entry.day) {
            return Err(bad(format!("day {} is outside the course (days 24 to 30)", entry.day)));
        }
        for (field, value) in [("question", &entry.question), ("answer", &entry.answer)] {
            if value.trim().is_empty() {
                return Err(bad(format!("`{field}` must not be empty")));
            }
        }
        if entry.key_points.len() < MIN_KEY_POINTS {
            return Err(bad(format!("give at least {MIN_KEY_POINTS} `key_points`")));
        }
        for (i, k) in entry.key_points.iter().enumerate() {
            if k.point.trim().is_empty() {
                return Err(bad(format!("key point {} has an empty `point`", i + 1)));
            }
            if k.terms.is_empty() {
                return Err(bad(format!("key point {} ({:?}) has no `match` terms", i + 1, k.point)));
            }
            for term in &k.terms {
                if term.split(" & ").any(|part| normalize(part).trim().is_empty()) {
                    return Err(bad(format!(
                        "key point {} has the match term {term:?}, which has no letters or digits to look for",
                        i + 1
                    )));
                }
            }
        }
        let mut tags = vec![file_tag];
        for tag in entry.also {
            if tags.contains(&tag) {
                return Err(bad(format!("tag `{tag}` is listed twice (the file's own tag counts)")));
            }
            tags.push(tag);
        }
        let practical = match entry.practical {
            None => None,
            Some(p) if p.trim().is_empty() => return Err(bad("`practical` must name an exercise such as `day-29/oom-killed`".into())),
            Some(p) => Some(p.trim().to_owned()),
        };
        questions.push(Question {
            question_html: markdown::render_inline(entry.question.trim()),
            answer_html: markdown::render(&entry.answer),
            key_points: entry
                .key_points
                .into_iter()
                .map(|k| KeyPoint {
                    point_html: markdown::render_inline(k.point.trim()),
                    point: k.point.trim().to_owned(),
                    terms: k.terms,
                })
                .collect(),
            id: entry.id,
            day: entry.day,
            difficulty: entry.difficulty,
            tags,
            scenario: entry.scenario,
            practical,
            question: entry.question.trim().to_owned(),
            answer: entry.answer.trim().to_owned(),
        });
    }
    Ok(questions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Question>, ContentError> {
        parse_file(Path::new("lessons/day-29-interview/questions/basics.toml"), "basics", text)
    }

    const ONE: &str = r#"
[[questions]]
id = "vm-vs-container"
day = 29
difficulty = "easy"
also = ["security"]
question = "How is a container different from a VM?"
answer = "A container shares the host's **kernel**."
key_points = [
  { point = "Containers share the host kernel", match = ["kernel"] },
  { point = "VMs run a guest OS on a hypervisor", match = ["hypervisor", "guest & os"] },
  { point = "Isolation comes from namespaces", match = ["namespace", "isolat"] },
]
"#;

    #[test]
    fn a_question_parses_with_its_file_tag_first() {
        let q = parse(ONE).unwrap().remove(0);
        assert_eq!(q.id, "vm-vs-container");
        assert_eq!(q.tags, vec![Tag::Basics, Tag::Security]);
        assert_eq!(q.difficulty, Difficulty::Easy);
        assert!(q.answer_html.contains("<strong>kernel</strong>"), "{}", q.answer_html);
        assert!(!q.scenario);
        let summary = serde_json::to_value(q.summary()).unwrap();
        assert_eq!(summary["tags"], serde_json::json!(["basics", "security"]));
        assert!(summary.get("answer").is_none() && summary.get("key_points").is_none());
    }

    #[test]
    fn key_points_match_words_stems_and_pairs_but_not_inside_words() {
        let q = parse(ONE).unwrap().remove(0);
        let hits = |typed: &str| q.match_key_points(typed).iter().map(|m| m.hit).collect::<Vec<_>>();
        assert_eq!(hits("They share the host's KERNEL; isolation is done with namespaces."), [true, false, true]);
        assert_eq!(hits("A VM boots a whole guest OS."), [false, true, false]);
        assert_eq!(hits("a guest, nothing else"), [false, false, false], "`guest & os` needs both words");
        assert_eq!(hits("kernels... hypervisors"), [true, true, false], "stems match longer words");
        assert_eq!(hits("unisolated"), [false, false, false], "a term starts at a word's start");
        assert_eq!(hits(""), [false, false, false]);
        assert!(term_matches(&normalize("docker run -d nginx"), "d "));
        assert!(!term_matches(&normalize("docker run nginx"), "d "), "a trailing space asks for the whole word");
        assert!(term_matches(&normalize("docker run nginx"), "d"));
    }

    #[test]
    fn normalize_keeps_letters_and_digits_only() {
        assert_eq!(normalize("Exit 137 = 128+9 (SIGKILL)!"), " exit 137 128 9 sigkill ");
        assert_eq!(normalize("--entrypoint"), " entrypoint ");
    }

    #[test]
    fn errors_name_the_file_line_and_question() {
        let err = parse(&ONE.replace("day = 29", "day = 31")).unwrap_err().to_string();
        assert!(err.starts_with("lessons/day-29-interview/questions/basics.toml:2: question `vm-vs-container`"), "{err}");
        assert!(err.contains("day 31"), "{err}");

        let one_point = ONE.replace("  { point = \"VMs run a guest OS on a hypervisor\", match = [\"hypervisor\", \"guest & os\"] },\n  { point = \"Isolation comes from namespaces\", match = [\"namespace\", \"isolat\"] },\n", "");
        let err = parse(&one_point).unwrap_err().to_string();
        assert!(err.contains("at least 2 `key_points`"), "{err}");

        let err = parse(&ONE.replace("match = [\"kernel\"]", "match = [\"--\"]")).unwrap_err().to_string();
        assert!(err.contains("no letters or digits"), "{err}");

        let err = parse(&ONE.replace("also = [\"security\"]", "also = [\"basics\"]")).unwrap_err().to_string();
        assert!(err.contains("listed twice"), "{err}");

        let err = parse(&ONE.replace("also = [\"security\"]", "also = [\"kubernetes\"]")).unwrap_err().to_string();
        assert!(err.starts_with("lessons/day-29-interview/questions/basics.toml: bad question file"), "{err}");

        let err = parse(&ONE.replace("id = \"vm-vs-container\"", "id = \"VM\"")).unwrap_err().to_string();
        assert!(err.contains("question `VM`") && err.contains("lowercase"), "{err}");

        let err = parse(&ONE.replace("answer = \"A container shares the host's **kernel**.\"", "answer = \" \"")).unwrap_err().to_string();
        assert!(err.contains("`answer` must not be empty"), "{err}");

        let err = parse_file(Path::new("q/kubernetes.toml"), "kubernetes", ONE).unwrap_err().to_string();
        assert!(err.contains("kubernetes") && err.contains("basics, images, storage"), "{err}");
    }

    /// The bank as shipped: loads, is big enough, covers every tag and difficulty, and links
    /// practical questions to real exercises.
    #[test]
    fn the_shipped_bank_is_complete() {
        let catalog = crate::Catalog::embedded().expect("the built-in content is valid");
        let bank = catalog.questions();
        assert!(bank.len() >= 65 + 15, "the notes' 65 questions plus the days' scenarios: {}", bank.len());
        for tag in Tag::ALL {
            let n = bank.iter().filter(|q| q.primary_tag() == tag).count();
            assert!(n >= 8, "tag {tag} has only {n} questions");
        }
        for difficulty in Difficulty::ALL {
            assert!(bank.iter().filter(|q| q.difficulty == difficulty).count() >= 10, "{difficulty:?}");
        }
        assert!(bank.iter().filter(|q| q.scenario).count() >= 15);
        for day in 26..=30 {
            assert!(bank.iter().any(|q| q.scenario && q.day == day), "no scenario question from day {day}");
        }
        let practicals: std::collections::BTreeSet<&str> = bank.iter().filter_map(|q| q.practical.as_deref()).collect();
        let day29 = catalog.lesson("day-29").unwrap();
        assert!(day29.exercises.len() >= 8, "{} practical exercises", day29.exercises.len());
        for exercise in &day29.exercises {
            assert!(practicals.contains(exercise.id.as_str()), "no question links to {}", exercise.id);
        }
        // The notes get these wrong; the model answers must not.
        let answer = |id: &str| catalog.question(id).unwrap().answer.to_lowercase();
        assert!(answer("cmd-vs-entrypoint").contains("--entrypoint"));
        assert!(answer("image-scanning").contains("snyk") && !answer("image-scanning").contains("sync"));
        assert!(answer("copy-vs-add").contains("zip files are never unpacked"));
        assert!(answer("healthcheck").contains("not restarted"));
        // Every model answer hits its own key points (they are written to be found).
        for q in bank {
            let missed: Vec<&str> = q.match_key_points(&q.answer).into_iter().filter(|m| !m.hit).map(|m| m.point).collect();
            assert!(missed.is_empty(), "question {}: its own model answer misses {missed:?}", q.id);
        }
    }
}
