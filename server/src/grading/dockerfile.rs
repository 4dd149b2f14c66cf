//! Just enough Dockerfile parsing to grade multi-stage builds: stages, their bases, `COPY --from`.

/// What a Dockerfile says about its stages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stages {
    /// Each stage's base image as written (`busybox`, `scratch`, or an earlier stage's name),
    /// with its `AS` name if any.
    pub stages: Vec<Stage>,
    /// How many `COPY --from=…` instructions there are.
    pub copy_from: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub base: String,
    pub name: Option<String>,
}

impl Stages {
    /// The last stage's base, following references to earlier stages by name.
    pub fn final_base(&self) -> Option<String> {
        let mut base = self.stages.last()?.base.clone();
        // Each hop goes to an earlier stage, so this ends.
        for _ in 0..self.stages.len() {
            match self.stages.iter().find(|s| s.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(&base))) {
                Some(stage) if stage.base != base => base = stage.base.clone(),
                _ => break,
            }
        }
        Some(base)
    }
}

/// Parses instructions: comments and blank lines skipped, `\` continuations joined.
pub fn parse(text: &str) -> Stages {
    let mut stages = Vec::new();
    let mut copy_from = 0;
    let mut logical = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if logical.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            logical.push_str(head);
            logical.push(' ');
            continue;
        }
        logical.push_str(trimmed);
        let instruction = std::mem::take(&mut logical);
        let mut words = instruction.split_whitespace();
        let Some(keyword) = words.next() else { continue };
        let args: Vec<&str> = words.collect();
        if keyword.eq_ignore_ascii_case("FROM") {
            let mut rest = args.iter().filter(|a| !a.starts_with("--"));
            let base = rest.next().map(|s| s.to_string()).unwrap_or_default();
            let name = match (rest.next(), rest.next()) {
                (Some(as_kw), Some(name)) if as_kw.eq_ignore_ascii_case("AS") => Some(name.to_string()),
                _ => None,
            };
            stages.push(Stage { base, name });
        } else if keyword.eq_ignore_ascii_case("COPY") && args.iter().any(|a| a.starts_with("--from=")) {
            copy_from += 1;
        }
    }
    Stages { stages, copy_from }
}

/// `busybox`, `busybox:latest`, `docker.io/library/busybox:latest` → `busybox:latest`.
pub fn normalize_image(reference: &str) -> String {
    let r = reference.trim().to_ascii_lowercase();
    let r = r.strip_prefix("docker.io/").unwrap_or(&r);
    let r = r.strip_prefix("library/").unwrap_or(r);
    if r == "scratch" || r.contains('@') {
        return r.to_owned();
    }
    let last = r.rsplit('/').next().unwrap_or(r);
    if last.contains(':') {
        r.to_owned()
    } else {
        format!("{r}:latest")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_stage_with_names_continuations_and_comments() {
        let text = "# build\nFROM --platform=linux/amd64 golang:1.22 AS build\nRUN go build \\\n  -o /calc .\n\nfrom build as test\nFROM scratch\nCOPY --from=build /calc /calc\nCOPY app.txt /\n";
        let s = parse(text);
        assert_eq!(s.stages.len(), 3);
        assert_eq!(s.stages[0], Stage { base: "golang:1.22".into(), name: Some("build".into()) });
        assert_eq!(s.copy_from, 1);
        assert_eq!(s.final_base().as_deref(), Some("scratch"));
    }

    #[test]
    fn final_base_follows_stage_names() {
        let s = parse("FROM busybox AS base\nFROM base AS final\nFROM final\n");
        assert_eq!(s.final_base().as_deref(), Some("busybox"));
        assert_eq!(parse("").final_base(), None);
    }

    #[test]
    fn image_names_are_normalised() {
        assert_eq!(normalize_image("busybox"), "busybox:latest");
        assert_eq!(normalize_image("docker.io/library/busybox:1.36"), "busybox:1.36");
        assert_eq!(normalize_image("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(normalize_image("Scratch"), "scratch");
    }
}
