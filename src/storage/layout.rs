//! How a znode's path becomes its key in the `znodes` column families: the parent's path,
//! a zero byte, then the znode's name. A parent's children are so adjacent and sorted by
//! name, and listed by a prefix scan (`parent` + `\0`); no path holds a zero byte
//! (`path::validate`), so no other znode's key starts with that prefix. The root's key is
//! the lone zero byte (no parent, no name).

use crate::path;

/// The key of the znode at `p`.
pub(crate) fn key(p: &str) -> Vec<u8> {
    let (parent, name) = match path::parent(p) {
        Some(parent) => (parent, path::name(p)),
        None => ("", ""),
    };
    let mut k = Vec::with_capacity(parent.len() + 1 + name.len());
    k.extend_from_slice(parent.as_bytes());
    k.push(0);
    k.extend_from_slice(name.as_bytes());
    k
}

/// The prefix every key of a child of `parent` starts with, and the first key past them.
pub(crate) fn children_range(parent: &str) -> (Vec<u8>, Vec<u8>) {
    let mut start = Vec::with_capacity(parent.len() + 1);
    start.extend_from_slice(parent.as_bytes());
    let mut end = start.clone();
    start.push(0);
    end.push(1);
    (start, end)
}

/// The path a key names, and the length of its parent's part; `None` if the key is not
/// one [`key`] makes.
pub(crate) fn path_of(k: &[u8]) -> Option<(String, usize)> {
    let zero = k.iter().position(|&b| b == 0)?;
    let (parent, name) = (
        std::str::from_utf8(&k[..zero]).ok()?,
        std::str::from_utf8(&k[zero + 1..]).ok()?,
    );
    let p = match (parent, name) {
        ("", "") => "/".to_string(),
        ("", _) => return None,
        _ => path::join(parent, name),
    };
    Some((p, zero))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_keep_a_parents_children_together_in_name_order() {
        for p in ["/", "/a", "/a/b", "/zookeeper/config", "/a-b/c"] {
            assert_eq!(path_of(&key(p)).map(|(p, _)| p).as_deref(), Some(p));
        }
        assert_eq!(key("/"), b"\0");
        assert_eq!(key("/a/b"), b"/a\0b");
        let mut keys: Vec<Vec<u8>> = ["/a/b", "/a-b", "/a/c", "/a", "/a/b/x", "/ab", "/a/a"]
            .into_iter()
            .map(key)
            .collect();
        keys.sort();
        let (start, end) = children_range("/a");
        let children: Vec<String> = keys
            .iter()
            .filter(|k| **k >= start && **k < end)
            .map(|k| path_of(k).unwrap().0)
            .collect();
        assert_eq!(children, ["/a/a", "/a/b", "/a/c"]);
        assert!(path_of(b"no zero").is_none());
        assert!(path_of(b"\0orphan").is_none());
    }
}
