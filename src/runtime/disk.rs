//! Free space on the filesystem that holds the outbox, for `queue.min_free_disk`.

use std::path::Path;

/// Bytes available to this process on the filesystem holding `path` (a file or a
/// directory); the directory above a file that does not exist yet is asked.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let at = if path.exists() {
        path
    } else {
        path.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
    };
    let stat = nix::sys::statvfs::statvfs(at).map_err(std::io::Error::from)?;
    Ok((stat.blocks_available() as u64).saturating_mul(stat.fragment_size() as u64))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_temporary_directory_has_some_space() {
        let dir = tempfile::tempdir().unwrap();
        assert!(super::free_bytes(dir.path()).unwrap() > 0);
        assert!(super::free_bytes(&dir.path().join("not-yet.db")).unwrap() > 0);
    }
}
