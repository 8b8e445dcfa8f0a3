//! Znode path rules (ZooKeeper's `PathUtils.validatePath`) and parent/child helpers.

use crate::error::{Error, Result};

/// Checks `path` against ZooKeeper's rules: absolute, `/`-separated, no empty component,
/// no trailing `/` (except the root), no `.` or `..` component, no NUL or control or
/// reserved characters.
///
/// ```
/// assert!(zkraft::path::validate("/app/config").is_ok());
/// assert!(zkraft::path::validate("/app/").is_err());
/// assert!(zkraft::path::validate("/app/../etc").is_err());
/// ```
pub fn validate(path: &str) -> Result<()> {
    validate_inner(path, false)
}

/// Validates the path given to a sequential create: the suffix is appended to it, so a
/// trailing `/` is allowed (`/queue/` becomes `/queue/0000000003`).
pub fn validate_sequential(path: &str) -> Result<()> {
    validate_inner(path, true)
}

fn invalid(path: &str, reason: &'static str) -> Error {
    Error::InvalidPath {
        path: path.to_string(),
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
        if component == "." || component == ".." {
            return Err(invalid(path, "relative paths not allowed"));
        }
        for c in component.chars() {
            if c == '\0' {
                return Err(invalid(path, "null character not allowed"));
            }
            if ('\u{1}'..='\u{1f}').contains(&c)
                || ('\u{7f}'..='\u{9f}').contains(&c)
                || ('\u{f000}'..='\u{f8ff}').contains(&c)
                || ('\u{fff0}'..='\u{ffff}').contains(&c)
            {
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
        for p in ["/", "/a", "/a/b", "/a-b_c.d", "/a/.b", "/a/b..", "/ü/日本"] {
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
