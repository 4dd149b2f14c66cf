//! Markdown to HTML for lesson prose and exercise briefs.
//!
//! A fenced block whose info string is `sh run` becomes a runnable snippet: the page's script
//! finds `pre.snippet[data-run]` and its button, and types the text into the lab terminal.
//! Every other code block is rendered as usual.
//!
//! In a lesson body (only there), a fenced block whose info string is `live <kind>` places a live
//! picture of the learner's session ([`LiveVisual`]); its text is the caption. The page fills it
//! from the session's scene (`web/static/visuals.js`).

use pulldown_cmark::{CodeBlockKind, CowStr, Event, Options, Parser, Tag, TagEnd};
use serde::Serialize;

/// A live picture of the learner's own session machine, drawn in the lesson while the lab runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LiveVisual {
    /// The machine's images as a bar chart of sizes, with the selected image's layers.
    Images,
    /// Volumes and bind mounts, and the containers that mount them.
    Volumes,
    /// Networks, the containers on each, and which container can reach which.
    Networks,
}

impl LiveVisual {
    pub const ALL: [LiveVisual; 3] = [LiveVisual::Images, LiveVisual::Volumes, LiveVisual::Networks];

    pub fn as_str(self) -> &'static str {
        match self {
            LiveVisual::Images => "images",
            LiveVisual::Volumes => "volumes",
            LiveVisual::Networks => "networks",
        }
    }

    pub fn parse(kind: &str) -> Option<LiveVisual> {
        LiveVisual::ALL.into_iter().find(|v| v.as_str() == kind)
    }

    fn default_caption(self) -> &'static str {
        match self {
            LiveVisual::Images => "Your images, live",
            LiveVisual::Volumes => "Your volumes and mounts, live",
            LiveVisual::Networks => "Your networks and containers, live",
        }
    }

    fn waiting(self) -> &'static str {
        match self {
            LiveVisual::Images => "Start the lab: your machine's images appear here, side by side by size.",
            LiveVisual::Volumes => "Start the lab: your machine's volumes and the containers that mount them appear here.",
            LiveVisual::Networks => "Start the lab: your machine's networks and containers appear here, with who can reach whom.",
        }
    }
}

/// A lesson body rendered, with the live visuals it places (in page order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedLesson {
    pub html: String,
    pub visuals: Vec<LiveVisual>,
}

/// Renders trusted course Markdown to HTML.
pub fn render(markdown: &str) -> String {
    render_blocks(markdown, false).map(|r| r.html).unwrap_or_default()
}

/// Renders a lesson body: like [`render`], and `live <kind>` blocks become live visuals.
/// An unknown kind is an error carrying that kind.
pub fn render_lesson(markdown: &str) -> Result<RenderedLesson, String> {
    render_blocks(markdown, true)
}

enum Block {
    Snippet(String),
    Live(LiveVisual, String),
}

fn render_blocks(markdown: &str, live: bool) -> Result<RenderedLesson, String> {
    let options =
        Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_SMART_PUNCTUATION;
    let mut events = Vec::new();
    let mut visuals = Vec::new();
    // Some(block) while inside a runnable or live block, collecting its contents.
    let mut block: Option<Block> = None;
    for event in Parser::new_ext(markdown, options) {
        match (&mut block, event) {
            (None, Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(info))))
                if is_runnable(&info) =>
            {
                block = Some(Block::Snippet(String::new()));
            }
            (None, Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(info))))
                if live && live_kind(&info).is_some() =>
            {
                let kind = live_kind(&info).unwrap_or_default();
                let visual = LiveVisual::parse(kind).ok_or_else(|| kind.to_owned())?;
                block = Some(Block::Live(visual, String::new()));
            }
            (Some(Block::Snippet(text) | Block::Live(_, text)), Event::Text(t)) => text.push_str(&t),
            (Some(done), Event::End(TagEnd::CodeBlock)) => {
                let html = match done {
                    Block::Snippet(text) => snippet_html(text),
                    Block::Live(visual, caption) => {
                        visuals.push(*visual);
                        live_html(*visual, caption)
                    }
                };
                events.push(Event::Html(CowStr::from(html)));
                block = None;
            }
            (Some(_), _) => {}
            (None, event) => events.push(event),
        }
    }
    let mut html = String::with_capacity(markdown.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut html, events.into_iter());
    Ok(RenderedLesson { html, visuals })
}

/// `live networks` → `networks`.
fn live_kind(info: &str) -> Option<&str> {
    let mut words = info.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some("live"), Some(kind), None) => Some(kind),
        (Some("live"), None, None) => Some(""),
        _ => None,
    }
}

fn live_html(visual: LiveVisual, caption: &str) -> String {
    let caption = caption.trim();
    let caption = if caption.is_empty() { visual.default_caption() } else { caption };
    format!(
        "<figure class=\"live-visual\" data-visual=\"{kind}\">\
         <figcaption><span class=\"live-badge\">Live</span> {caption}</figcaption>\
         <div class=\"live-visual-body\" aria-live=\"polite\"><p class=\"live-visual-empty\">{waiting}</p></div>\
         </figure>\n",
        kind = visual.as_str(),
        caption = escape(caption),
        waiting = escape(visual.waiting()),
    )
}

/// Renders a one-paragraph text (a task title, a hint) without the surrounding `<p>`.
pub fn render_inline(markdown: &str) -> String {
    let html = render(markdown.trim());
    match html
        .trim_end()
        .strip_prefix("<p>")
        .and_then(|h| h.strip_suffix("</p>"))
    {
        Some(inner) if !inner.contains("<p>") => inner.to_owned(),
        _ => html,
    }
}

/// `sh run`, `bash run`, `console run`: any info string whose words include `run`.
fn is_runnable(info: &str) -> bool {
    let mut words = info.split_whitespace();
    matches!(words.next(), Some("sh" | "bash" | "shell")) && words.any(|w| w == "run")
}

fn snippet_html(text: &str) -> String {
    let text = text.trim_end_matches('\n');
    format!(
        "<div class=\"snippet-block\"><pre class=\"snippet\" data-run><code class=\"language-sh\">{}</code></pre>\
         <button type=\"button\" class=\"run-snippet\" title=\"Type this into the lab terminal\">Run</button></div>\n",
        escape(text)
    )
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn sh_run_blocks_get_a_run_button() {
        let html = render("Try it:\n\n```sh run\ndocker run --rm busybox echo \"a<b\"\n```\n");
        assert!(html.contains("<pre class=\"snippet\" data-run>"), "{html}");
        assert!(
            html.contains("docker run --rm busybox echo &quot;a&lt;b&quot;</code>"),
            "{html}"
        );
        assert!(
            html.contains("<button type=\"button\" class=\"run-snippet\""),
            "{html}"
        );
    }

    #[test]
    fn other_code_blocks_stay_plain() {
        let html = render("```sh\ndocker ps\n```\n\n```dockerfile\nFROM scratch\n```\n");
        assert!(!html.contains("data-run"), "{html}");
        assert!(!html.contains("<button"), "{html}");
        assert!(
            html.contains("<pre><code class=\"language-sh\">docker ps\n</code></pre>"),
            "{html}"
        );
    }

    #[test]
    fn inline_text_has_no_paragraph() {
        assert_eq!(
            super::render_inline("Create `box`"),
            "Create <code>box</code>"
        );
    }

    #[test]
    fn live_blocks_become_visuals_in_lessons_only() {
        let md = "Before.\n\n```live networks\nWho can reach <whom>\n```\n\n```live images\n```\n";
        let lesson = super::render_lesson(md).unwrap();
        assert_eq!(lesson.visuals, vec![super::LiveVisual::Networks, super::LiveVisual::Images]);
        assert!(lesson.html.contains("<figure class=\"live-visual\" data-visual=\"networks\">"), "{}", lesson.html);
        assert!(lesson.html.contains("Who can reach &lt;whom&gt;</figcaption>"), "{}", lesson.html);
        assert!(lesson.html.contains("Your images, live</figcaption>"), "{}", lesson.html);
        assert!(!lesson.html.contains("<pre>"), "{}", lesson.html);
        // Elsewhere (briefs, answers) the same block is just code.
        assert!(render(md).contains("<pre><code class=\"language-live\">"));
    }

    #[test]
    fn an_unknown_live_visual_is_refused_by_name() {
        assert_eq!(super::render_lesson("```live planets\n```\n"), Err("planets".to_owned()));
        assert_eq!(super::render_lesson("```live\n```\n"), Err(String::new()));
    }

    #[test]
    fn prose_is_rendered() {
        let html = render("A *container* is a `process`.");
        assert_eq!(
            html,
            "<p>A <em>container</em> is a <code>process</code>.</p>\n"
        );
    }
}
