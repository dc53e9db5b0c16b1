//! The modules import each other as a DAG (STYLE §13): within every module,
//! its submodules and its own file (`mod.rs`, named `mod` below) never
//! import each other in a cycle, and `proto` imports nothing above it.
//!
//! The check reads the sources under `engine/src` (all of them, so a new
//! file is checked the day it is added), blanks comments and literals, and
//! takes every path that starts with `crate::`, `super::`, `self::` or the
//! name of one of the file's child modules (`worker::run` in `io/mod.rs`),
//! in `use` trees and in code alike. A path names the longest module it
//! starts with; an item of a parent module (`super::Serve` from a child of
//! `io`) names that module's own file, since that is where it is written.
//!
//! `io` is checked strictly: `io/mod.rs`, the engine, is a node like its
//! children. Elsewhere a module's own file may re-export its children and
//! they may use its items (the usual facade); only siblings must form a
//! DAG.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// A module's path from the crate root (`["io", "worker"]`).
type ModPath = Vec<String>;

/// Edges `from -> to` between the children of one module; `mod` is the
/// module's own file.
type Graph = BTreeSet<(String, String)>;

/// The name of a module's own file among its children.
const OWN: &str = "mod";

/// One source file of the library.
struct Source {
    module: ModPath,
    text: String,
}

/// Every `.rs` file under `dir` that is a module of the library (not the
/// binary's `main.rs`).
fn read_sources(dir: &Path) -> Vec<Source> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let entries = std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        for entry in entries {
            let path = entry.unwrap_or_else(|e| panic!("{}: {e}", d.display())).path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let rel = path.strip_prefix(dir).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if let Some(module) = module_of(rel) {
                let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                out.push(Source { module, text });
            }
        }
    }
    out
}

/// `lib.rs` is the root, `a/mod.rs` and `a.rs` are `a`, `a/b.rs` is `a::b`;
/// `main.rs` (the binary) and other files are no module of the library.
fn module_of(rel: &Path) -> Option<ModPath> {
    if rel.extension()? != "rs" || rel == Path::new("main.rs") {
        return None;
    }
    let mut parts: ModPath = rel.with_extension("").iter().map(|p| p.to_string_lossy().into_owned()).collect();
    match parts.last().map(String::as_str) {
        Some("lib") if parts.len() == 1 => parts.clear(),
        Some("mod") => {
            parts.pop();
        }
        _ => {}
    }
    Some(parts)
}

/// `text` with comments and the insides of string and char literals
/// blanked (newlines kept), so that only code is left to scan.
fn code_only(text: &str) -> String {
    let s: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < s.len() {
        let rest = &s[i..];
        if rest.starts_with(&['/', '/']) {
            while i < s.len() && s[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if rest.starts_with(&['/', '*']) {
            let mut depth = 0;
            while i < s.len() {
                if s[i..].starts_with(&['/', '*']) {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if s[i..].starts_with(&['*', '/']) {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(s[i]));
                    i += 1;
                }
            }
        } else if let Some(hashes) = raw_string_start(&s, i) {
            // r"..", r#".."#, br#".."#: no escapes; ends at `"` and the same number of `#`.
            let open = s[i..].iter().position(|&c| c == '"').map_or(s.len(), |p| i + p + 1);
            out.extend(std::iter::repeat_n(' ', open - i));
            i = open;
            while i < s.len()
                && !(s[i] == '"' && s[i + 1..].iter().take(hashes).filter(|&&c| c == '#').count() == hashes)
            {
                out.push(blank(s[i]));
                i += 1;
            }
            let end = (i + 1 + hashes).min(s.len());
            out.extend(std::iter::repeat_n(' ', end - i));
            i = end;
        } else if s[i] == '"' {
            out.push(' ');
            i += 1;
            while i < s.len() && s[i] != '"' {
                let n = if s[i] == '\\' { 2 } else { 1 };
                for c in &s[i..(i + n).min(s.len())] {
                    out.push(blank(*c));
                }
                i += n;
            }
            out.push(' ');
            i += 1;
        } else if s[i] == '\'' && char_literal_len(&s[i..]) > 0 {
            let n = char_literal_len(&s[i..]);
            out.extend(std::iter::repeat_n(' ', n));
            i += n;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

/// The number of `#` of a raw string literal starting at `i`, if one does.
fn raw_string_start(s: &[char], i: usize) -> Option<usize> {
    if i > 0 && (s[i - 1].is_alphanumeric() || s[i - 1] == '_') {
        return None;
    }
    let mut j = i;
    if s.get(j) == Some(&'b') || s.get(j) == Some(&'c') {
        j += 1;
    }
    if s.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let hashes = s[j..].iter().take_while(|&&c| c == '#').count();
    (s.get(j + hashes) == Some(&'"')).then_some(hashes)
}

/// The length of the char literal at the start of `s` (`'x'`, `'\n'`,
/// `'\u{1F600}'`), or 0 for a lifetime or label (`'a`).
fn char_literal_len(s: &[char]) -> usize {
    match s.get(1) {
        // The escaped character may itself be a quote (`'\''`).
        Some('\\') => s.iter().skip(3).position(|&c| c == '\'').map_or(0, |p| p + 4),
        Some(_) if s.get(2) == Some(&'\'') => 3,
        _ => 0,
    }
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Every path in `code` that starts with `crate`, `super` or `self`, or
/// with the name of a child module of the file (`children`: `worker::run`
/// in `io/mod.rs`), and goes on with `::`; use trees expanded
/// (`super::{a::X, b}` is `super::a::X` and `super::b`). Each comes with
/// the inline modules (`mod tests { .. }`) it appears in; a child's name
/// inside an inline module is not taken (it would be the inline module's
/// child).
fn paths(code: &str, children: &BTreeSet<String>) -> Vec<(ModPath, ModPath)> {
    let s: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    // Inline modules open at a brace depth: (name, depth inside it).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if c == '{' {
            depth += 1;
            i += 1;
            continue;
        }
        if c == '}' {
            if inline.last().is_some_and(|(_, d)| *d == depth) {
                inline.pop();
            }
            depth = depth.saturating_sub(1);
            i += 1;
            continue;
        }
        if !is_ident(c) {
            i += 1;
            continue;
        }
        let word: String = s[i..].iter().take_while(|&&c| is_ident(c)).collect();
        // A segment after `::` belongs to a path that started earlier.
        let mut k = i;
        while k > 0 && s[k - 1].is_whitespace() {
            k -= 1;
        }
        let inside_path = k >= 2 && s[k - 2..k] == [':', ':'];
        i += word.chars().count();
        if word == "mod" {
            let mut j = i;
            skip_ws(&s, &mut j);
            let name: String = s[j..].iter().take_while(|&&c| is_ident(c)).collect();
            j += name.chars().count();
            skip_ws(&s, &mut j);
            if !name.is_empty() && s.get(j) == Some(&'{') {
                inline.push((name, depth + 1));
            }
            continue;
        }
        let start = match word.as_str() {
            "crate" | "super" | "self" => vec![word],
            w if inline.is_empty() && children.contains(w) => vec!["self".to_owned(), word],
            _ => continue,
        };
        let mut j = i;
        skip_ws(&s, &mut j);
        if inside_path || !s[j..].starts_with(&[':', ':']) {
            continue;
        }
        j += 2;
        let scope: ModPath = inline.iter().map(|(n, _)| n.clone()).collect();
        let mut found = Vec::new();
        use_tree(&s, &mut j, start, &mut found);
        out.extend(found.into_iter().map(|p| (scope.clone(), p)));
        // Nested groups have their own braces; the tree is consumed whole.
        i = j;
    }
    out
}

fn skip_ws(s: &[char], i: &mut usize) {
    while *i < s.len() && s[*i].is_whitespace() {
        *i += 1;
    }
}

/// The rest of a path or use tree after `prefix::`.
fn use_tree(s: &[char], i: &mut usize, prefix: ModPath, out: &mut Vec<ModPath>) {
    skip_ws(s, i);
    match s.get(*i) {
        Some('{') => {
            *i += 1;
            loop {
                skip_ws(s, i);
                match s.get(*i) {
                    None => return,
                    Some('}') => {
                        *i += 1;
                        return;
                    }
                    Some(',') => *i += 1,
                    Some(_) => {
                        let before = *i;
                        use_tree(s, i, prefix.clone(), out);
                        if *i == before {
                            *i += 1;
                        }
                    }
                }
            }
        }
        Some('*') => {
            *i += 1;
            out.push(prefix);
        }
        Some(&c) if is_ident(c) => {
            let word: String = s[*i..].iter().take_while(|&&c| is_ident(c)).collect();
            *i += word.chars().count();
            let mut j = *i;
            skip_ws(s, &mut j);
            let mut path = prefix;
            if word != "self" {
                path.push(word);
            }
            if s[j..].starts_with(&[':', ':']) {
                *i = j + 2;
                use_tree(s, i, path, out);
                return;
            }
            out.push(path);
            // `X as Y`: the alias is no path.
            if s[j..].starts_with(&['a', 's']) && s.get(j + 2).is_some_and(|c| c.is_whitespace()) {
                j += 2;
                skip_ws(s, &mut j);
                j += s[j..].iter().take_while(|&&c| is_ident(c)).count();
                *i = j;
            }
        }
        _ => out.push(prefix),
    }
}

/// `path` as written in module `scope` (a file's module plus the inline
/// modules around the path), from the crate root.
fn absolute(scope: &[String], path: &[String]) -> ModPath {
    let mut at: ModPath = scope.to_vec();
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            at.clear();
            rest = &rest[1..];
        }
        Some("self") => rest = &rest[1..],
        _ => {}
    }
    while rest.first().is_some_and(|p| p == "super") {
        at.pop();
        rest = &rest[1..];
    }
    at.extend(rest.iter().cloned());
    at
}

/// The edges between siblings that the imports of `sources` make, by the
/// module whose children they join (the root is `[]`).
fn sibling_edges(sources: &[Source]) -> BTreeMap<ModPath, Graph> {
    let modules: BTreeSet<&ModPath> = sources.iter().map(|s| &s.module).collect();
    let mut graphs: BTreeMap<ModPath, Graph> = BTreeMap::new();
    for src in sources {
        let children: BTreeSet<String> = modules
            .iter()
            .filter(|m| m.len() == src.module.len() + 1 && m.starts_with(&src.module))
            .filter_map(|m| m.last().cloned())
            .collect();
        for (inline, path) in paths(&code_only(&src.text), &children) {
            let scope: ModPath = src.module.iter().chain(&inline).cloned().collect();
            let abs = absolute(&scope, &path);
            // The longest module the path starts with.
            let target = (0..=abs.len()).rev().map(|n| abs[..n].to_vec()).find(|m| modules.contains(m));
            let Some(target) = target else { continue };
            let from = &src.module;
            let common = from.iter().zip(&target).take_while(|(a, b)| a == b).count();
            if common == from.len() && common == target.len() {
                continue;
            }
            let side = |m: &ModPath| m.get(common).cloned().unwrap_or_else(|| OWN.to_owned());
            graphs.entry(from[..common].to_vec()).or_default().insert((side(from), side(&target)));
        }
    }
    graphs
}

/// A cycle of `graph`, first node repeated at the end, if it has one.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    let nodes: BTreeSet<&String> = graph.iter().flat_map(|(a, b)| [a, b]).collect();
    // 0: not seen, 1: on the current path, 2: done.
    let mut state: BTreeMap<&String, u8> = nodes.iter().map(|n| (*n, 0)).collect();
    fn visit<'g>(
        n: &'g String,
        graph: &'g Graph,
        state: &mut BTreeMap<&'g String, u8>,
        stack: &mut Vec<&'g String>,
    ) -> Option<Vec<String>> {
        state.insert(n, 1);
        stack.push(n);
        for (_, next) in graph.iter().filter(|(a, _)| a == n) {
            match state.get(next) {
                Some(1) => {
                    let at = stack.iter().position(|s| *s == next).unwrap_or(0);
                    let mut cycle: Vec<String> = stack[at..].iter().map(|s| (*s).clone()).collect();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(0) => {
                    if let Some(c) = visit(next, graph, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n, 2);
        None
    }
    for n in &nodes {
        if state.get(n) == Some(&0)
            && let Some(c) = visit(n, graph, &mut state, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

fn engine_sources() -> Vec<Source> {
    read_sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
}

fn display(m: &[String]) -> String {
    if m.is_empty() { "crate".to_owned() } else { m.join("::") }
}

/// `graph` without the edges from and to the module's own file.
fn children_only(graph: &Graph) -> Graph {
    graph.iter().filter(|(a, b)| a != OWN && b != OWN).cloned().collect()
}

#[test]
fn io_modules_import_each_other_without_cycles() {
    // Strict: `io/mod.rs` (the engine) is one of the nodes, so no child
    // may import what the engine's file defines either.
    let graphs = sibling_edges(&engine_sources());
    let io = graphs.get(&vec!["io".to_owned()]).unwrap_or_else(|| panic!("no imports found in engine/src/io"));
    assert!(io.len() > 10, "too few imports found in engine/src/io: {io:?}");
    if let Some(cycle) = find_cycle(io) {
        panic!("import cycle in engine/src/io: {}", cycle.join(" -> "));
    }
}

#[test]
fn the_children_of_every_module_import_each_other_without_cycles() {
    // proto, bpf, cli and the crate root: a parent's own file may re-export
    // its children and they may use its items; siblings form a DAG.
    let graphs = sibling_edges(&engine_sources());
    assert!(graphs.contains_key(&vec!["proto".to_owned()]), "no imports found in engine/src/proto");
    let cycles: Vec<String> = graphs
        .iter()
        .filter_map(|(scope, g)| {
            find_cycle(&children_only(g)).map(|c| format!("in {}: {}", display(scope), c.join(" -> ")))
        })
        .collect();
    assert!(cycles.is_empty(), "import cycles between sibling modules:\n{}", cycles.join("\n"));
}

#[test]
fn the_crate_layers_import_downwards_only() {
    let graphs = sibling_edges(&engine_sources());
    let root = graphs.get(&Vec::new()).unwrap_or_else(|| panic!("no imports between the top-level modules"));
    assert_eq!(find_cycle(root), None, "the top-level modules import each other in a cycle");
    let from_proto: Vec<&String> = root.iter().filter(|(a, _)| a == "proto").map(|(_, b)| b).collect();
    assert!(from_proto.is_empty(), "proto is sans-IO and imports nothing above it, but imports {from_proto:?}");
}

/// The checker itself, on made-up sources.
mod checker {
    use super::*;

    fn src(module: &str, text: &str) -> Source {
        let module = if module.is_empty() { Vec::new() } else { module.split("::").map(str::to_owned).collect() };
        Source { module, text: text.to_owned() }
    }

    fn edges(sources: &[Source], scope: &str) -> Vec<String> {
        let scope: ModPath = if scope.is_empty() { Vec::new() } else { scope.split("::").map(str::to_owned).collect() };
        let graphs = sibling_edges(sources);
        graphs.get(&scope).map_or_else(Vec::new, |g| g.iter().map(|(a, b)| format!("{a}->{b}")).collect())
    }

    #[test]
    fn use_trees_paths_in_code_and_parents_are_edges() {
        let sources = [
            src("", "pub mod x;"),
            src("x", "mod a; mod b; mod c; mod d;\nuse c::Thing;\npub struct Serve;"),
            src("x::a", "use super::{b::{self, B}, c::C as D};\nfn f() { crate::x::d::run::<u8>(); }"),
            src("x::b", "use super::Serve;\nuse crate::x::c::*;"),
            src("x::c", ""),
            src("x::d", "fn g() -> Option<super::super::x::c::C> { None }"),
        ];
        assert_eq!(edges(&sources, "x"), ["a->b", "a->c", "a->d", "b->c", "b->mod", "d->c", "mod->c"]);
        assert_eq!(find_cycle(&sibling_edges(&sources)[&vec!["x".to_owned()]]), None);
    }

    #[test]
    fn comments_literals_and_inline_modules_are_not_imports() {
        let sources = [
            src("x", "mod a; mod b;"),
            src(
                "x::a",
                "// use super::b::X;\n/* super::b::Y /* nested */ super::b::Z */\n\
                 const S: &str = \"super::b::W\";\nconst R: &str = r#\"super::b::\"V\"#;\n\
                 const Q: char = '\"'; const E: char = '\\''; fn l<'a>(x: &'a str) -> &'a str { x }\n\
                 #[cfg(test)]\nmod tests {\n    use super::*;\n    use super::super::b::T;\n}\n",
            ),
            src("x::b", "pub struct T;"),
        ];
        // Only the test module's `super::super::b` is a real path, from a's file.
        assert_eq!(edges(&sources, "x"), ["a->b"]);
    }

    #[test]
    fn paths_into_other_crates_are_not_edges() {
        let sources = [
            src("", "pub mod io; mod y;\nuse std::io::Read;\nfn f() -> std::io::Result<()> { y::g(); ::io::x() }"),
            src("io", "use crate::y::Z as _;"),
            src("y", "fn g() { let io = 1; }"),
        ];
        assert_eq!(edges(&sources, ""), ["io->y", "mod->y"]);
    }

    #[test]
    fn a_cycle_is_named() {
        let sources = [
            src("x", "mod a; mod b; mod c;"),
            src("x::a", "use super::b::B;"),
            src("x::b", "use super::c::C;"),
            src("x::c", "fn f() { super::a::run(); }"),
        ];
        let cycle = find_cycle(&sibling_edges(&sources)[&vec!["x".to_owned()]]);
        assert_eq!(cycle, Some(["a", "b", "c", "a"].map(str::to_owned).to_vec()));
        let parent = [src("x", "mod a; use a::A; pub struct P;"), src("x::a", "use super::P;")];
        let cycle = find_cycle(&sibling_edges(&parent)[&vec!["x".to_owned()]]);
        assert_eq!(cycle, Some(["a", "mod", "a"].map(str::to_owned).to_vec()), "a child importing from its parent");
    }
}
