//! Which files of a ZooKeeper data directory an import reads: ZooKeeper's names are
//! `snapshot.<zxid>` and `log.<zxid>` in hexadecimal (the zxid the snapshot started at,
//! the first zxid the log holds), in `<dataDir>/version-2` (and `<dataLogDir>/version-2`
//! when the logs are kept apart).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A snapshot or log file and the zxid its name carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ZkFile {
    pub path: PathBuf,
    pub zxid: i64,
    /// Set for a compressed snapshot (`.gz`, `.snappy`): its suffix.
    pub compressed: Option<String>,
}

/// An I/O error on `path`, naming it.
pub(super) fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::Io(format!("{}: {e}", path.display()))
}

/// The whole of file `path`.
pub(super) fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| io_error(path, e))
}

/// `dir/version-2` when it exists (the directory ZooKeeper's `dataDir` names), else `dir`
/// itself (given `version-2` directly).
pub(super) fn version_dir(dir: &Path) -> Result<PathBuf> {
    if !dir.is_dir() {
        return Err(Error::Config(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    let v2 = dir.join("version-2");
    Ok(if v2.is_dir() { v2 } else { dir.to_path_buf() })
}

/// The files of `dir` named `<prefix>.<hex zxid>[.<suffix>]`, by zxid, oldest first.
pub(super) fn list(dir: &Path, prefix: &str) -> Result<Vec<ZkFile>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix(prefix).and_then(|r| r.strip_prefix('.')) else {
            continue;
        };
        let (hex, suffix) = match rest.split_once('.') {
            Some((h, s)) => (h, Some(s.to_string())),
            None => (rest, None),
        };
        let Ok(zxid) = u64::from_str_radix(hex, 16) else {
            continue;
        };
        out.push(ZkFile {
            path: entry.path(),
            zxid: zxid as i64,
            compressed: suffix,
        });
    }
    out.sort_by_key(|f| f.zxid);
    Ok(out)
}

/// The logs to replay after a snapshot of `snap_zxid`, as ZooKeeper's
/// `FileTxnLog.getLogFiles` picks them: the last log that starts at or before it, and
/// every later one.
pub(super) fn logs_after(logs: &[ZkFile], snap_zxid: i64) -> &[ZkFile] {
    let first = logs.iter().rposition(|f| f.zxid <= snap_zxid).unwrap_or(0);
    &logs[first.min(logs.len())..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_zxid_and_pick_the_logs_zookeeper_would() {
        let dir = tempfile::tempdir().unwrap();
        let v2 = dir.path().join("version-2");
        std::fs::create_dir(&v2).unwrap();
        for n in [
            "snapshot.0",
            "snapshot.10000002a",
            "snapshot.2b.gz",
            "log.1",
            "log.100000001",
            "log.20",
            "acceptedEpoch",
            "snapshot.zz",
        ] {
            std::fs::write(v2.join(n), b"").unwrap();
        }
        assert_eq!(version_dir(dir.path()).unwrap(), v2);
        let snaps = list(&v2, "snapshot").unwrap();
        let zxids: Vec<i64> = snaps.iter().map(|f| f.zxid).collect();
        assert_eq!(zxids, [0, 0x2b, 0x1_0000_002a]);
        assert_eq!(snaps[1].compressed.as_deref(), Some("gz"));
        let logs = list(&v2, "log").unwrap();
        let pick = |z| {
            logs_after(&logs, z)
                .iter()
                .map(|f| f.zxid)
                .collect::<Vec<_>>()
        };
        assert_eq!(pick(0x1_0000_002a), [0x1_0000_0001]);
        assert_eq!(pick(0x25), [0x20, 0x1_0000_0001]);
        assert_eq!(pick(0), [1, 0x20, 0x1_0000_0001]);
        assert!(version_dir(&v2.join("log.1")).is_err());
    }
}
