//! The module graph of every workspace crate has no import cycles other than the ones listed in
//! [`KNOWN_CYCLES`], and that list can only shrink: a new cycle fails, and so does a listed cycle
//! that no longer exists (remove it from the list in the commit that breaks it).
//!
//! For every `src/` folder of a workspace member, and every module folder below it, the nodes are
//! the sibling modules declared at that level (`mod x;`, as a file or a folder; `tests` and
//! `testing` are not nodes, and `src/bin/` holds separate crates). A file's imports count for the sibling it belongs to: `crate::a::b`
//! paths anywhere in the code, `use` trees with groups (`use crate::{a, b::c}`), and `super::` and
//! `self::` paths resolved from the file's own module. Comments, string literals, items under
//! `#[cfg(test)]` and the files such an item declares (`#[cfg(test)] mod route_tests;`) do not
//! count. Tarjan's algorithm finds the strongly connected components of each level.
//!
//! Plain `std`, no root: runs in `cargo test --workspace`. The same file checks the layers: the
//! crate graph from path dependencies is acyclic, nothing under a `src/domain/` names `axum` or
//! `crate::http`, and the `machine` and `engine` crates (once they exist) carry no web stack.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Cycles that exist today, as `<crate>/src[/<module folder>]: {a, b, ...}`. Only remove lines.
const KNOWN_CYCLES: &[&str] = &[
    // Through `app` (every route module names `AppState`; `app` composes them all) and the domain
    // edges of issue 14's plan, steps 5 to 8.
    "server/src: {app, classroom, drills, grading, lifecycle, metrics, pages, ports, registry, security_headers, sessions, store, terminal, visuals, warm}",
];

// ---------------------------------------------------------------------------------------------
// Lexing: identifiers, `::` and single punctuation; comments, strings and chars dropped.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    PathSep,
    Punct(char),
}

fn lex(src: &str) -> Vec<Tok> {
    let s: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let is_ident_start = |c: char| c == '_' || c.is_alphabetic();
    let is_ident = |c: char| c == '_' || c.is_alphanumeric();
    while i < s.len() {
        let c = s[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '/' && s.get(i + 1) == Some(&'/') {
            while i < s.len() && s[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && s.get(i + 1) == Some(&'*') {
            // Block comments nest in Rust.
            let mut depth = 0;
            while i < s.len() {
                if s[i] == '/' && s.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if s[i] == '*' && s.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == '"' {
            i = skip_string(&s, i);
        } else if c == '\'' {
            if s.get(i + 1) == Some(&'\\') {
                // An escaped char literal: '\n', '\'', '\u{1F600}'.
                i += 3;
                while i < s.len() && s[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if s.get(i + 2) == Some(&'\'') {
                i += 3; // 'x'
            } else {
                // A lifetime or label: 'a, 'static.
                i += 1;
                while i < s.len() && is_ident(s[i]) {
                    i += 1;
                }
            }
        } else if is_ident_start(c) {
            let start = i;
            while i < s.len() && is_ident(s[i]) {
                i += 1;
            }
            let word: String = s[start..i].iter().collect();
            let raw_prefix = word == "r" || word == "br" || word == "cr";
            if raw_prefix && matches!(s.get(i), Some('"') | Some('#')) && raw_string_follows(&s, i) {
                i = skip_raw_string(&s, i);
            } else if word == "r" && s.get(i) == Some(&'#') && s.get(i + 1).is_some_and(|&c| is_ident_start(c)) {
                // A raw identifier: r#type.
                let start = i + 1;
                i += 1;
                while i < s.len() && is_ident(s[i]) {
                    i += 1;
                }
                out.push(Tok::Ident(s[start..i].iter().collect()));
            } else if (word == "b" || word == "c") && s.get(i) == Some(&'"') {
                i = skip_string(&s, i);
            } else if word.starts_with(|c: char| c.is_ascii_digit()) {
                // A number literal (its suffix included); nothing to resolve.
            } else {
                out.push(Tok::Ident(word));
            }
        } else if c.is_ascii_digit() {
            while i < s.len() && (is_ident(s[i]) || s[i] == '.') && !(s[i] == '.' && s.get(i + 1) == Some(&'.')) {
                i += 1;
            }
        } else if c == ':' && s.get(i + 1) == Some(&':') {
            out.push(Tok::PathSep);
            i += 2;
        } else {
            out.push(Tok::Punct(c));
            i += 1;
        }
    }
    out
}

/// From the opening quote of a string literal to just past its closing quote.
fn skip_string(s: &[char], open: usize) -> usize {
    let mut i = open + 1;
    while i < s.len() {
        match s[i] {
            '\\' => i += 2,
            '"' => return i + 1,
            _ => i += 1,
        }
    }
    i
}

/// Whether `r`, then `#`s, then a quote starts at `i` (after the `r`).
fn raw_string_follows(s: &[char], mut i: usize) -> bool {
    while s.get(i) == Some(&'#') {
        i += 1;
    }
    s.get(i) == Some(&'"')
}

fn skip_raw_string(s: &[char], mut i: usize) -> usize {
    let mut hashes = 0;
    while s.get(i) == Some(&'#') {
        hashes += 1;
        i += 1;
    }
    i += 1; // the opening quote
    while i < s.len() {
        if s[i] == '"' && (1..=hashes).all(|k| s.get(i + k) == Some(&'#')) {
            return i + 1 + hashes;
        }
        i += 1;
    }
    i
}

// ---------------------------------------------------------------------------------------------
// Parsing: the module paths a file refers to, resolved to absolute paths within its crate.

#[derive(Debug, Default, PartialEq)]
struct FileRefs {
    /// Absolute paths (from the crate root, without `crate`) this file names.
    paths: BTreeSet<Vec<String>>,
    /// Child modules this file declares under `#[cfg(test)]` (`mod route_tests;`).
    test_only_children: BTreeSet<String>,
    /// Whether the code (outside tests) names the `axum` crate.
    names_axum: bool,
}

/// The paths a file whose own module is `module` (e.g. `["grading", "live"]`) refers to.
fn file_refs(src: &str, module: &[String]) -> FileRefs {
    let toks = lex(src);
    let mut refs = FileRefs::default();
    // Inline modules (`mod name { ... }`) open at a brace depth.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    let here = |inline: &[(String, usize)]| -> Vec<String> {
        module.iter().cloned().chain(inline.iter().map(|(m, _)| m.clone())).collect()
    };
    while i < toks.len() {
        if let Some(after) = cfg_test_attr(&toks, i) {
            if after.1 && inline.is_empty() {
                // `#![cfg(test)]` at the top: the whole file is test code.
                break;
            }
            if after.1 {
                i = after.0; // inside an inline module: counted (more edges, never fewer)
                continue;
            }
            i = skip_test_item(&toks, after.0, &mut refs.test_only_children);
            continue;
        }
        match &toks[i] {
            Tok::Ident(w) if w == "axum" => {
                refs.names_axum = true;
                i += 1;
            }
            Tok::Punct('{') => {
                depth += 1;
                i += 1;
            }
            Tok::Punct('}') => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
                i += 1;
            }
            Tok::Ident(w) if w == "mod" => {
                if let (Some(Tok::Ident(name)), Some(Tok::Punct('{'))) = (toks.get(i + 1), toks.get(i + 2)) {
                    depth += 1;
                    inline.push((name.clone(), depth));
                    i += 3;
                } else {
                    i += 1;
                }
            }
            Tok::Ident(w) if w == "use" => {
                let (trees, next) = parse_use(&toks, i + 1);
                refs.names_axum |= toks[i..next.min(toks.len())].contains(&ident("axum"));
                let cur = here(&inline);
                for path in trees {
                    if let Some(abs) = resolve(&path, &cur) {
                        refs.paths.insert(abs);
                    }
                }
                i = next;
            }
            Tok::Ident(w) if (w == "crate" || w == "super" || w == "self") && toks.get(i + 1) == Some(&Tok::PathSep) => {
                // `$crate::` in a macro is this crate as well.
                let mut path = vec![w.clone()];
                let mut j = i + 1;
                while toks.get(j) == Some(&Tok::PathSep) {
                    match toks.get(j + 1) {
                        Some(Tok::Ident(seg)) => {
                            path.push(seg.clone());
                            j += 2;
                        }
                        _ => break,
                    }
                }
                if let Some(abs) = resolve(&path, &here(&inline)) {
                    refs.paths.insert(abs);
                }
                i = j;
            }
            _ => i += 1,
        }
    }
    refs
}

/// If an attribute `#[cfg(test)]` (or `#![cfg(test)]`) starts at `i`: the index after it, and
/// whether it is an inner attribute.
fn cfg_test_attr(toks: &[Tok], i: usize) -> Option<(usize, bool)> {
    if toks.get(i) != Some(&Tok::Punct('#')) {
        return None;
    }
    let inner = toks.get(i + 1) == Some(&Tok::Punct('!'));
    let j = if inner { i + 2 } else { i + 1 };
    let want = [Tok::Punct('['), ident("cfg"), Tok::Punct('('), ident("test"), Tok::Punct(')'), Tok::Punct(']')];
    (toks.get(j..j + want.len())? == want).then_some((j + want.len(), inner))
}

fn ident(s: &str) -> Tok {
    Tok::Ident(s.to_owned())
}

/// Skips the item after a `#[cfg(test)]` (and its other attributes), from `i`; records `mod x;`.
fn skip_test_item(toks: &[Tok], mut i: usize, test_only: &mut BTreeSet<String>) -> usize {
    // Further attributes on the same item.
    while toks.get(i) == Some(&Tok::Punct('#')) && toks.get(i + 1) == Some(&Tok::Punct('[')) {
        i = skip_balanced(toks, i + 1, '[', ']');
    }
    // `pub mod x;`, `pub(crate) mod x;`, `mod x;`
    let mut k = i;
    if toks.get(k) == Some(&ident("pub")) {
        k += 1;
        if toks.get(k) == Some(&Tok::Punct('(')) {
            k = skip_balanced(toks, k, '(', ')');
        }
    }
    if toks.get(k) == Some(&ident("mod")) {
        if let (Some(Tok::Ident(name)), Some(Tok::Punct(';'))) = (toks.get(k + 1), toks.get(k + 2)) {
            test_only.insert(name.clone());
            return k + 3;
        }
    }
    // Any other item ends at a `;` outside brackets or with its closing brace.
    let mut nest = 0usize;
    while i < toks.len() {
        match toks[i] {
            Tok::Punct('(') | Tok::Punct('[') => nest += 1,
            Tok::Punct(')') | Tok::Punct(']') => nest = nest.saturating_sub(1),
            Tok::Punct(';') if nest == 0 => return i + 1,
            Tok::Punct('{') if nest == 0 => return skip_balanced(toks, i, '{', '}'),
            _ => {}
        }
        i += 1;
    }
    i
}

/// From an opening bracket at `open` to just past its match.
fn skip_balanced(toks: &[Tok], open: usize, l: char, r: char) -> usize {
    let mut depth = 0usize;
    let mut i = open;
    while i < toks.len() {
        if toks[i] == Tok::Punct(l) {
            depth += 1;
        } else if toks[i] == Tok::Punct(r) {
            depth -= 1;
            if depth == 0 {
                return i + 1;
            }
        }
        i += 1;
    }
    i
}

/// Parses a `use` tree from `i` (after `use`) to its `;`: every path it names, unresolved.
fn parse_use(toks: &[Tok], i: usize) -> (Vec<Vec<String>>, usize) {
    let mut out = Vec::new();
    let end = use_tree(toks, i, &[], &mut out);
    let mut j = end;
    while j < toks.len() && toks[j] != Tok::Punct(';') {
        j += 1;
    }
    (out, j + 1)
}

fn use_tree(toks: &[Tok], mut i: usize, prefix: &[String], out: &mut Vec<Vec<String>>) -> usize {
    let mut path = prefix.to_vec();
    if toks.get(i) == Some(&Tok::PathSep) {
        i += 1; // `use ::std::...`: an external crate
        path.push("::".to_owned());
    }
    loop {
        match toks.get(i) {
            Some(Tok::Ident(seg)) if seg != "as" => {
                path.push(seg.clone());
                i += 1;
                if toks.get(i) == Some(&Tok::PathSep) {
                    i += 1;
                    continue;
                }
                if toks.get(i) == Some(&ident("as")) {
                    i += 2; // the new name
                }
                out.push(path);
                return i;
            }
            Some(Tok::Punct('*')) => {
                out.push(path);
                return i + 1;
            }
            Some(Tok::Punct('{')) => {
                i += 1;
                loop {
                    match toks.get(i) {
                        Some(Tok::Punct('}')) => return i + 1,
                        Some(Tok::Punct(',')) => i += 1,
                        None | Some(Tok::Punct(';')) => return i,
                        Some(_) => {
                            let next = use_tree(toks, i, &path, out);
                            if next == i {
                                i += 1; // not a tree: never loop on it
                            } else {
                                i = next;
                            }
                        }
                    }
                }
            }
            _ => {
                if !path.is_empty() {
                    out.push(path);
                }
                return i;
            }
        }
    }
}

/// An absolute path (from the crate root) for `path` named in module `cur`; `None` when it starts
/// elsewhere (another crate, or a name in scope).
fn resolve(path: &[String], cur: &[String]) -> Option<Vec<String>> {
    let mut base: Vec<String> = match path.first()?.as_str() {
        "crate" => Vec::new(),
        "self" | "super" => cur.to_vec(),
        _ => return None,
    };
    let mut rest = &path[1..];
    if path[0] == "super" {
        base.pop()?;
    }
    while rest.first().is_some_and(|s| s == "super") {
        base.pop()?;
        rest = &rest[1..];
    }
    base.extend(rest.iter().filter(|s| *s != "self").cloned());
    Some(base)
}

// ---------------------------------------------------------------------------------------------
// The graph: one level per module folder, edges between siblings.

const NOT_NODES: &[&str] = &["main", "lib", "mod", "tests", "testing"];

#[derive(Debug, Default)]
struct Level {
    nodes: BTreeSet<String>,
    edges: BTreeMap<String, BTreeSet<String>>,
}

/// The `.rs` files of a crate's `src/` with their module paths, leaving out `bin/` (separate
/// crates) and files declared under `#[cfg(test)]`.
fn crate_files(src: &Path) -> Vec<(Vec<String>, FileRefs)> {
    let mut out = Vec::new();
    let roots = ["lib.rs", "main.rs"].map(|f| src.join(f));
    let mut queue: Vec<(PathBuf, Vec<String>, PathBuf)> =
        roots.iter().filter(|p| p.is_file()).map(|p| (p.clone(), Vec::new(), src.to_path_buf())).collect();
    let mut seen = BTreeSet::new();
    while let Some((file, module, child_dir)) = queue.pop() {
        if !seen.insert(file.clone()) {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        let refs = file_refs(&text, &module);
        // Every child module file in `child_dir` is declared by this file (or it does not build);
        // those declared under cfg(test) are left out.
        for name in declared_children(&text) {
            if refs.test_only_children.contains(&name) {
                continue;
            }
            let mut m = module.clone();
            m.push(name.clone());
            let flat = child_dir.join(format!("{name}.rs"));
            let nested = child_dir.join(&name).join("mod.rs");
            if flat.is_file() {
                queue.push((flat, m, child_dir.join(&name)));
            } else if nested.is_file() {
                queue.push((nested, m, child_dir.join(&name)));
            }
        }
        out.push((module, refs));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Names of `mod x;` declarations outside any `#[cfg(test)]` filtering (done by the caller).
fn declared_children(src: &str) -> Vec<String> {
    let toks = lex(src);
    let mut out = Vec::new();
    for w in toks.windows(3) {
        if let [Tok::Ident(m), Tok::Ident(name), Tok::Punct(';')] = w {
            if m == "mod" {
                out.push(name.clone());
            }
        }
    }
    out
}

/// The levels of one crate, keyed by the module path of their folder (`[]` for `src/`).
fn crate_levels(src: &Path) -> BTreeMap<Vec<String>, Level> {
    let files = crate_files(src);
    let mut levels: BTreeMap<Vec<String>, Level> = BTreeMap::new();
    for (module, _) in &files {
        for depth in 0..module.len() {
            let name = &module[depth];
            if !NOT_NODES.contains(&name.as_str()) {
                levels.entry(module[..depth].to_vec()).or_default().nodes.insert(name.clone());
            }
        }
    }
    for (module, refs) in &files {
        for depth in 0..module.len() {
            let me = &module[depth];
            let parent = &module[..depth];
            let Some(level) = levels.get_mut(parent) else { continue };
            if !level.nodes.contains(me) {
                continue;
            }
            for path in &refs.paths {
                if path.len() > depth && path.starts_with(parent) {
                    let to = &path[depth];
                    if to != me && level.nodes.contains(to) {
                        level.edges.entry(me.clone()).or_default().insert(to.clone());
                    }
                }
            }
        }
    }
    levels
}

/// Strongly connected components with more than one node (Tarjan), each sorted, in order.
fn cycles_of(nodes: &BTreeSet<String>, edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Tarjan<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            let edges = self.edges;
            for w in edges.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if self.on_stack.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut comp = Vec::new();
                loop {
                    let w = self.stack.pop().unwrap();
                    self.on_stack.remove(w);
                    comp.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if comp.len() > 1 {
                    comp.sort();
                    self.out.push(comp);
                }
            }
        }
    }
    let mut t = Tarjan {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in nodes {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.out.sort();
    t.out
}

/// The workspace members named in `Cargo.toml` (`members = ["a", "b"]`, on one or more lines).
fn workspace_members(root: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(root.join("Cargo.toml")).expect("the workspace Cargo.toml");
    let start = text.find("members").expect("a [workspace] members list");
    let list = &text[start..];
    let list = &list[list.find('[').unwrap() + 1..list.find(']').unwrap()];
    list.split(',').map(|m| m.trim().trim_matches('"').to_owned()).filter(|m| !m.is_empty()).collect()
}

/// Every cycle of every workspace member, as `<member>/src[/<folders>]: {a, b}`, with the edges
/// inside it (`a -> b, c; b -> a`) to show where to cut.
fn workspace_cycles(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for member in workspace_members(root) {
        let src = root.join(&member).join("src");
        if !src.is_dir() {
            continue;
        }
        for (folder, level) in crate_levels(&src) {
            for cycle in cycles_of(&level.nodes, &level.edges) {
                let dir: String = std::iter::once(format!("{member}/src")).chain(folder.iter().cloned()).collect::<Vec<_>>().join("/");
                let inside: Vec<String> = cycle
                    .iter()
                    .map(|m| {
                        let to: Vec<&str> = level.edges.get(m).into_iter().flatten().filter(|t| cycle.contains(t)).map(|t| t.as_str()).collect();
                        format!("{m} -> {}", to.join(", "))
                    })
                    .collect();
                out.insert(format!("{dir}: {{{}}}", cycle.join(", ")), inside.join("; "));
            }
        }
    }
    out
}

/// `("server/src", {"a", "b"})` from `"server/src: {a, b}"`.
fn parse_cycle(line: &str) -> (&str, BTreeSet<&str>) {
    let (dir, members) = line.split_once(": ").unwrap_or((line, ""));
    (dir, members.trim_matches(['{', '}']).split(", ").collect())
}

/// The ratchet: what was found must be exactly what is listed. A listed cycle that lost members
/// is reported as shrunk (replace its line); a cycle with members that no listed one has is new.
fn check_against(found: &BTreeSet<String>, known: &[&str]) -> Result<(), String> {
    let known: BTreeSet<String> = known.iter().map(|s| s.to_string()).collect();
    let unlisted: Vec<&String> = found.difference(&known).collect();
    let gone: Vec<&String> = known.difference(found).collect();
    let within_gone = |c: &String| {
        let (dir, members) = parse_cycle(c);
        gone.iter().any(|g| {
            let (gdir, gmembers) = parse_cycle(g);
            gdir == dir && members.is_subset(&gmembers)
        })
    };
    let (shrunk, new): (Vec<&String>, Vec<&String>) = unlisted.into_iter().partition(|c| within_gone(c));
    let mut msg = String::new();
    if !new.is_empty() {
        msg += &format!("import cycles not in KNOWN_CYCLES (break them; do not list them): {new:#?}\n");
    }
    if !shrunk.is_empty() {
        msg += &format!("listed cycles shrank (good): put these lines in KNOWN_CYCLES instead: {shrunk:#?}\n");
    }
    if !gone.is_empty() {
        msg += &format!("KNOWN_CYCLES lists cycles that no longer exist as listed (remove these lines): {gone:#?}\n");
    }
    if msg.is_empty() {
        Ok(())
    } else {
        Err(format!("{msg}found today: {found:#?}"))
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the workspace").to_path_buf()
}

#[test]
fn the_module_graph_has_no_cycles_but_the_known_ones_and_the_list_only_shrinks() {
    let cycles = workspace_cycles(&workspace_root());
    let found: BTreeSet<String> = cycles.keys().cloned().collect();
    if let Err(e) = check_against(&found, KNOWN_CYCLES) {
        panic!("{e}\nthe edges inside each cycle: {cycles:#?}");
    }
}

/// Every member's package name, with the dependencies it builds with (`[dependencies]` and
/// `[build-dependencies]`; dev-dependencies may point back, as cargo allows).
fn manifests(root: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for member in workspace_members(root) {
        let text = std::fs::read_to_string(root.join(&member).join("Cargo.toml")).expect("a member's Cargo.toml");
        let mut name = None;
        let mut deps = BTreeSet::new();
        let mut section = String::new();
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                section = line.trim_matches(['[', ']']).to_owned();
                continue;
            }
            let Some((key, value)) = line.split_once('=') else { continue };
            let key = key.trim();
            if section == "package" && key == "name" {
                name = Some(value.trim().trim_matches('"').to_owned());
            } else if section == "dependencies" || section == "build-dependencies" {
                deps.insert(key.split('.').next().unwrap().trim().to_owned());
            }
        }
        out.insert(name.expect("a [package] name"), deps);
    }
    out
}

/// The workspace crates and the path dependencies between them.
fn crate_graph(root: &Path) -> (BTreeSet<String>, BTreeMap<String, BTreeSet<String>>) {
    let manifests = manifests(root);
    let names: BTreeSet<String> = manifests.keys().cloned().collect();
    let edges = manifests.into_iter().map(|(n, deps)| (n, deps.intersection(&names).cloned().collect())).collect();
    (names, edges)
}

#[test]
fn the_workspace_crates_depend_on_each_other_without_cycles() {
    let (names, edges) = crate_graph(&workspace_root());
    assert!(names.len() >= 4, "the members were read: {names:?}");
    assert!(edges["docklab-server"].contains("sandbox"), "path dependencies were read: {edges:?}");
    assert_eq!(cycles_of(&names, &edges), Vec::<Vec<String>>::new(), "{edges:#?}");
}

/// Crates that must not carry the web stack: the machine runtime (its re-executed helpers stay
/// small) and the grading engine.
const NO_WEB_CRATES: &[&str] = &["machine", "engine"];
const WEB_DEPS: &[&str] = &["axum", "rustls", "tokio-rustls", "hyper-rustls", "rcgen"];

/// `crate: dependency` for every web dependency of a crate in [`NO_WEB_CRATES`].
fn web_deps_in_runtime_crates(root: &Path) -> Vec<String> {
    manifests(root)
        .into_iter()
        .filter(|(name, _)| NO_WEB_CRATES.contains(&name.as_str()))
        .flat_map(|(name, deps)| deps.into_iter().filter(|d| WEB_DEPS.contains(&d.as_str())).map(move |d| format!("{name}: {d}")))
        .collect()
}

/// Files under a member's `src/domain/` whose code names `axum` or `crate::http`.
fn http_in_domain(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for member in workspace_members(root) {
        let src = root.join(&member).join("src");
        if !src.join("domain").is_dir() {
            continue;
        }
        for (module, refs) in crate_files(&src) {
            if module.first().map(String::as_str) != Some("domain") {
                continue;
            }
            if refs.names_axum || refs.paths.iter().any(|p| p.first().map(String::as_str) == Some("http")) {
                out.push(format!("{member}/src/{}", module.join("/")));
            }
        }
    }
    out
}

#[test]
fn the_domain_layer_names_no_http_and_the_runtime_crates_carry_no_web_stack() {
    let root = workspace_root();
    assert_eq!(http_in_domain(&root), Vec::<String>::new(), "domain modules that name axum or crate::http");
    assert_eq!(web_deps_in_runtime_crates(&root), Vec::<String>::new(), "web dependencies of {NO_WEB_CRATES:?}");
}

// ---------------------------------------------------------------------------------------------
// The check checks itself.

fn strings(paths: &[&[&str]]) -> BTreeSet<Vec<String>> {
    paths.iter().map(|p| p.iter().map(|s| s.to_string()).collect()).collect()
}

fn module(m: &[&str]) -> Vec<String> {
    m.iter().map(|s| s.to_string()).collect()
}

#[test]
fn use_groups_are_read_path_by_path() {
    let refs = file_refs("use crate::{a, b::c, d::{e, f as g, self}, h::*};\nuse std::{x, y};", &[]);
    assert_eq!(refs.paths, strings(&[&["a"], &["b", "c"], &["d", "e"], &["d", "f"], &["d"], &["h"]]));
}

#[test]
fn super_and_self_are_resolved_from_the_files_module() {
    let src = "use super::z::T;\nfn f() { super::super::w::go(); self::helper(); }\nuse super::{p, q::R};";
    let refs = file_refs(src, &module(&["x", "y"]));
    assert_eq!(refs.paths, strings(&[&["x", "z", "T"], &["w", "go"], &["x", "y", "helper"], &["x", "p"], &["x", "q", "R"]]));
    // Inside an inline module, `super` is the file's module.
    let refs = file_refs("mod inner { use super::k; fn f() { crate::m::n(); } }\nuse self::inner::f;", &module(&["a"]));
    assert_eq!(refs.paths, strings(&[&["a", "k"], &["m", "n"], &["a", "inner", "f"]]));
}

#[test]
fn test_code_is_left_out() {
    let src = "
        use crate::kept;
        #[cfg(test)]
        mod tests { use crate::q; fn f() { crate::r::s(); } }
        #[cfg(test)]
        #[path = \"x.rs\"]
        mod route_tests;
        #[cfg(test)]
        pub(crate) mod helpers;
        #[cfg(test)]
        use crate::only_in_tests;
        #[cfg(test)]
        fn helper() -> Vec<u8> { crate::t::u() }
        #[cfg(not(test))]
        use crate::also_kept;
        mod real;
    ";
    let refs = file_refs(src, &[]);
    assert_eq!(refs.paths, strings(&[&["kept"], &["also_kept"]]));
    assert_eq!(refs.test_only_children, ["helpers", "route_tests"].iter().map(|s| s.to_string()).collect());
    assert_eq!(file_refs("#![cfg(test)]\nuse crate::a;", &[]).paths, BTreeSet::new());
}

#[test]
fn comments_strings_and_chars_are_not_code() {
    let src = r##"
        // crate::a
        /// [`crate::doc_link`]
        /* crate::b /* nested */ crate::c */
        //! crate::inner_doc
        fn f<'a>(x: &'a str) -> &'a str {
            let s = "crate::d \" crate::d2";
            let r = r#"crate::e " crate::e2"#;
            let q = '"';
            let e = '\'';
            let b = b"crate::g";
            crate::h::i(x)
        }
        let t = "after the strings"; crate::j::k();
    "##;
    assert_eq!(file_refs(src, &[]).paths, strings(&[&["h", "i"], &["j", "k"]]));
}

#[test]
fn the_ratchet_fails_on_a_new_cycle_and_on_a_listed_cycle_that_is_gone() {
    let found: BTreeSet<String> = ["s/src: {a, b}".to_owned()].into();
    assert!(check_against(&found, &["s/src: {a, b}"]).is_ok());
    let err = check_against(&found, &[]).unwrap_err();
    assert!(err.contains("not in KNOWN_CYCLES") && err.contains("s/src: {a, b}"), "{err}");
    let err = check_against(&BTreeSet::new(), &["s/src: {a, b}"]).unwrap_err();
    assert!(err.contains("no longer exist") && err.contains("s/src: {a, b}"), "{err}");
    // A listed cycle that lost a member fails too, saying which line replaces it.
    let err = check_against(&found, &["s/src: {a, b, c}"]).unwrap_err();
    assert!(err.contains("shrank") && !err.contains("not in KNOWN_CYCLES"), "{err}");
    // One that gained a member, or one at another level, is new.
    let err = check_against(&found, &["s/src: {a}"]).unwrap_err();
    assert!(err.contains("not in KNOWN_CYCLES"), "{err}");
    let err = check_against(&found, &["s/src/x: {a, b, c}"]).unwrap_err();
    assert!(err.contains("not in KNOWN_CYCLES"), "{err}");
}

/// A temporary folder removed when dropped (plain std: no tempfile crate here).
struct TempTree(PathBuf);

impl TempTree {
    fn new() -> TempTree {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let dir = std::env::temp_dir().join(format!("module-graph-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempTree(dir)
    }

    fn write(&self, rel: &str, text: &str) {
        let path = self.0.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

impl Drop for TempTree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_synthetic_workspace_reports_exactly_its_cycles() {
    let t = TempTree::new();
    t.write("Cargo.toml", "[workspace]\nresolver = \"2\"\nmembers = [\n    \"alpha\",\n    \"beta\",\n]\n");
    t.write("alpha/src/lib.rs", "pub mod a;\npub mod b;\npub mod c;\nmod d;\n#[cfg(test)]\nmod testing;\n");
    // a -> b and a -> c, through one group.
    t.write("alpha/src/a.rs", "use crate::{b::Thing, c};\npub struct X;\n");
    // b -> a, from a nested file through `super::super`: the cycle {a, b}.
    t.write("alpha/src/b/mod.rs", "pub mod inner;\npub mod one;\npub mod two;\npub struct Thing;\n");
    t.write("alpha/src/b/inner.rs", "use super::super::a::X;\n");
    // b/one <-> b/two: a cycle one level down.
    t.write("alpha/src/b/one.rs", "use super::two::T;\npub struct U;\n");
    t.write("alpha/src/b/two.rs", "pub struct T;\nfn f() { let _ = crate::b::one::U; }\n");
    // c -> a only in a comment, a string and a test-only file: no cycle {a, c}.
    t.write("alpha/src/c.rs", "// crate::a\nconst S: &str = \"crate::a\";\n#[cfg(test)]\nmod helper;\n");
    t.write("alpha/src/c/helper.rs", "use crate::a::X;\n");
    // d -> a only in a test module; testing -> everything is not a node.
    t.write("alpha/src/d.rs", "#[cfg(test)]\nmod tests { use crate::a::X; }\n");
    t.write("alpha/src/testing.rs", "use crate::{a, b, c, d};\n");
    // beta: no cycles, and a crate root that is main.rs.
    t.write("beta/src/main.rs", "mod p;\nmod q;\nfn main() {}\n");
    t.write("beta/src/p.rs", "use crate::q;\n");
    t.write("beta/src/q.rs", "pub fn f() {}\n");
    let cycles = workspace_cycles(&t.0);
    assert_eq!(cycles["alpha/src: {a, b}"], "a -> b; b -> a");
    let found: BTreeSet<String> = cycles.keys().cloned().collect();
    let want: BTreeSet<String> = ["alpha/src: {a, b}".to_owned(), "alpha/src/b: {one, two}".to_owned()].into();
    assert_eq!(found, want);
    // A cycle fixed here and still listed fails, as does one not listed.
    assert!(check_against(&found, &["alpha/src: {a, b}"]).is_err());
    assert!(check_against(&found, &["alpha/src: {a, b}", "alpha/src/b: {one, two}", "beta/src: {p, q}"]).is_err());
    assert!(check_against(&found, &["alpha/src: {a, b}", "alpha/src/b: {one, two}"]).is_ok());
}

#[test]
fn the_layer_rules_catch_http_in_the_domain_a_web_runtime_and_a_crate_cycle() {
    let t = TempTree::new();
    t.write("Cargo.toml", "[workspace]\nmembers = [\"server\", \"machine\", \"engine\"]\n");
    t.write("server/Cargo.toml", "[package]\nname = \"server\"\n\n[dependencies]\nmachine.workspace = true\naxum.workspace = true\n");
    t.write("server/src/lib.rs", "mod domain;\nmod http;\n");
    t.write("server/src/http.rs", "use axum::Router;\nuse crate::domain::a;\n");
    t.write("server/src/domain/mod.rs", "mod a;\nmod b;\nmod c;\n");
    t.write("server/src/domain/a.rs", "use axum::{Router, routing::get};\n");
    t.write("server/src/domain/b.rs", "fn f() { crate::http::serve(); }\n");
    t.write("server/src/domain/c.rs", "// axum and crate::http in a comment\n#[cfg(test)]\nmod tests { use axum::Json; }\n");
    t.write("machine/Cargo.toml", "[package]\nname = \"machine\"\n\n[dependencies]\nnix = \"0.31\"\naxum = { workspace = true }\nserver = { path = \"../server\" }\n\n[dev-dependencies]\nrcgen.workspace = true\n");
    t.write("engine/Cargo.toml", "[package]\nname = \"engine\"\n\n[build-dependencies]\nrustls.workspace = true\n");
    assert_eq!(http_in_domain(&t.0), ["server/src/domain/a", "server/src/domain/b"]);
    assert_eq!(web_deps_in_runtime_crates(&t.0), ["engine: rustls", "machine: axum"]);
    let (names, edges) = crate_graph(&t.0);
    assert_eq!(cycles_of(&names, &edges), [["machine", "server"]]);
}

