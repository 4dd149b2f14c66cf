//! Markdown to HTML for lesson prose and exercise briefs.
//!
//! A fenced block whose info string is `sh run` becomes a runnable snippet: the page's script
//! finds `pre.snippet[data-run]` and its button, and types the text into the lab terminal.
//! Every other code block is rendered as usual.

use pulldown_cmark::{CodeBlockKind, CowStr, Event, Options, Parser, Tag, TagEnd};

/// Renders trusted course Markdown to HTML.
pub fn render(markdown: &str) -> String {
    let options =
        Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_SMART_PUNCTUATION;
    let mut events = Vec::new();
    // Some(text) while inside a runnable block, collecting its contents.
    let mut snippet: Option<String> = None;
    for event in Parser::new_ext(markdown, options) {
        match (&mut snippet, event) {
            (None, Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(info))))
                if is_runnable(&info) =>
            {
                snippet = Some(String::new());
            }
            (Some(text), Event::Text(t)) => text.push_str(&t),
            (Some(text), Event::End(TagEnd::CodeBlock)) => {
                events.push(Event::Html(CowStr::from(snippet_html(text))));
                snippet = None;
            }
            (Some(_), _) => {}
            (None, event) => events.push(event),
        }
    }
    let mut html = String::with_capacity(markdown.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut html, events.into_iter());
    html
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
    fn prose_is_rendered() {
        let html = render("A *container* is a `process`.");
        assert_eq!(
            html,
            "<p>A <em>container</em> is a <code>process</code>.</p>\n"
        );
    }
}
