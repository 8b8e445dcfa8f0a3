//! Znode path rules (ZooKeeper's `PathUtils.validatePath`) and parent/child helpers.

use crate::error::{Error, Result};

/// Checks `path` against ZooKeeper's rules: absolute, `/`-separated, no empty component,
/// no trailing `/` (except the root), no `.` or `..` component, no NUL, and none of the
/// characters ZooKeeper refuses (see [`is_forbidden_char`]).
///
/// ```
/// assert!(zkraft::path::validate("/app/config").is_ok());
/// assert!(zkraft::path::validate("/app/").is_err());
/// assert!(zkraft::path::validate("/app/../etc").is_err());
/// assert!(zkraft::path::validate("/emoji-😀").is_err()); // ZooKeeper refuses it too
/// ```
pub fn validate(path: &str) -> Result<()> {
    validate_inner(path, false)
}

/// Validates the path given to a sequential create: the suffix is appended to it, so a
/// trailing `/` is allowed (`/queue/` becomes `/queue/0000000003`). ZooKeeper validates
/// `path + "1"` in this case; this accepts and refuses exactly the same paths.
pub fn validate_sequential(path: &str) -> Result<()> {
    validate_inner(path, true)
}

/// The characters ZooKeeper's `PathUtils` refuses in a path, besides NUL. Java checks
/// UTF-16 code units: U+0001–U+001F, U+007F–U+009F, U+D800–U+F8FF (the surrogates, so
/// every character outside the Basic Multilingual Plane — every emoji — and the private
/// use area) and U+FFF0–U+FFFF.
pub fn is_forbidden_char(c: char) -> bool {
    matches!(c,
        '\u{1}'..='\u{1f}'
        | '\u{7f}'..='\u{9f}'
        | '\u{e000}'..='\u{f8ff}'
        | '\u{fff0}'..='\u{ffff}')
        // Outside the BMP: a surrogate pair in Java's UTF-16.
        || u32::from(c) > 0xFFFF
}

fn invalid(path: &str, reason: &'static str) -> Error {
    // A refused path can be megabytes long: the error keeps a bounded prefix.
    const SHOWN: usize = 256;
    let mut end = path.len().min(SHOWN);
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    let shown = if end < path.len() {
        format!("{}… ({} bytes)", &path[..end], path.len())
    } else {
        path.to_string()
    };
    Error::InvalidPath {
        path: shown,
        reason,
    }
}

fn validate_inner(path: &str, sequential: bool) -> Result<()> {
    if path.is_empty() {
        return Err(invalid(path, "path length must be > 0"));
    }
    if !path.starts_with('/') {
        return Err(invalid(path, "path must start with / character"));
    }
    if path.len() == 1 {
        // "/" itself; with a sequential suffix it becomes "/0000000000".
        return Ok(());
    }
    if path.ends_with('/') && !sequential {
        return Err(invalid(path, "path must not end with / character"));
    }
    let mut components = path[1..].split('/').peekable();
    while let Some(component) = components.next() {
        let last = components.peek().is_none();
        if component.is_empty() {
            if sequential && last {
                continue;
            }
            return Err(invalid(path, "empty node name specified"));
        }
        // With a sequential suffix the last component is never "." or "..".
        if (component == "." || component == "..") && !(sequential && last) {
            return Err(invalid(path, "relative paths not allowed"));
        }
        for c in component.chars() {
            if c == '\0' {
                return Err(invalid(path, "null character not allowed"));
            }
            if is_forbidden_char(c) {
                return Err(invalid(path, "invalid character"));
            }
        }
    }
    Ok(())
}

/// The parent of `path` (`/` for a child of the root); `None` for the root.
pub fn parent(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    match path.rfind('/') {
        Some(0) => Some("/"),
        Some(i) => Some(&path[..i]),
        None => None,
    }
}

/// The last component of `path` (empty for the root).
pub fn name(path: &str) -> &str {
    match path.rfind('/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

/// Joins a parent path and a child name.
pub fn join(parent: &str, child: &str) -> String {
    if parent == "/" {
        format!("/{child}")
    } else {
        format!("{parent}/{child}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_zookeeper_paths() {
        for p in [
            "/",
            "/a",
            "/a/b",
            "/a-b_c.d",
            "/a/.b",
            "/a/b..",
            "/...",
            "/ü/日本",
            "/\u{a0}",
            "/\u{d7ff}",
            "/\u{f900}",
            "/\u{ffef}",
        ] {
            assert!(validate(p).is_ok(), "{p}");
        }
    }

    #[test]
    fn rejects_what_zookeeper_rejects() {
        for p in [
            "",
            "a",
            "a/b",
            "/a/",
            "//",
            "/a//b",
            "/.",
            "/..",
            "/a/./b",
            "/a/../b",
            "/a\0b",
            "/a\u{1}",
            "/a\u{7f}",
            "/\u{fff5}",
            "/\u{fff0}",
            "/\u{ffff}",
            "/\u{e000}",
            "/\u{f000}",
            "/\u{f8ff}",
            "/a\u{9f}",
            "/a\u{80}",
            "/😀",
            "/a/b\u{10000}",
            "/\u{10ffff}",
        ] {
            assert!(
                matches!(validate(p), Err(Error::InvalidPath { .. })),
                "{p:?}"
            );
        }
    }

    #[test]
    fn sequential_paths_may_end_with_slash() {
        assert!(validate_sequential("/queue/").is_ok());
        assert!(validate_sequential("/queue/item-").is_ok());
        assert!(validate_sequential("/").is_ok());
        assert!(validate_sequential("/a//").is_err());
        assert!(validate("/queue/").is_err());
        // ZooKeeper validates `path + "1"`: a last "." or ".." becomes ".1" / "..1".
        assert!(validate_sequential("/q/.").is_ok());
        assert!(validate_sequential("/q/..").is_ok());
        assert!(validate_sequential("/./q").is_err());
        assert!(validate_sequential("/q/\u{e000}").is_err());
    }

    #[test]
    fn long_paths_are_reported_with_a_bounded_prefix() {
        let long = format!("/{}\0", "é".repeat(1 << 20));
        match validate(&long) {
            Err(Error::InvalidPath { path, .. }) => {
                assert!(path.len() < 400, "{}", path.len());
                assert!(path.ends_with(&format!("({} bytes)", long.len())));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parent_and_name() {
        assert_eq!(parent("/"), None);
        assert_eq!(parent("/a"), Some("/"));
        assert_eq!(parent("/a/b/c"), Some("/a/b"));
        assert_eq!(name("/a/b/c"), "c");
        assert_eq!(name("/"), "");
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/a", "b"), "/a/b");
    }
}
