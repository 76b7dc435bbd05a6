//! The socket file: created with the configured mode, a stale one from a crash replaced,
//! one that a live daemon serves never touched, removed again on clean shutdown.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("another process is serving `{0}`; is a daemon already running?")]
    InUse(PathBuf),
    #[error("`{0}` exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    #[error("socket `{path}`: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SocketError + '_ {
    move |source| SocketError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The socket file this process created. [`SocketFile::remove`] deletes it, but only if
/// the file at the path is still ours (same inode): a newer daemon's socket is left alone.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    ino: u64,
    dev: u64,
}

impl SocketFile {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn remove(self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path)
            && meta.ino() == self.ino
            && meta.dev() == self.dev
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Binds the socket at `path` with file mode `mode`, creating its directory if missing.
///
/// A socket file left by a crashed daemon is replaced; if connecting to it succeeds, a live
/// daemon owns it and binding is refused.
pub fn bind(path: &Path, mode: u32) -> Result<(UnixListener, SocketFile), SocketError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => return Err(SocketError::InUse(path.to_owned())),
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    tracing::info!(socket = %path.display(), "replacing stale socket file from an earlier run");
                    std::fs::remove_file(path).map_err(io_err(path))?;
                }
                Err(e) => return Err(io_err(path)(e)),
            }
        }
        Ok(_) => return Err(SocketError::NotASocket(path.to_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(path)(e)),
    }
    let listener = UnixListener::bind(path).map_err(io_err(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io_err(path))?;
    let meta = std::fs::symlink_metadata(path).map_err(io_err(path))?;
    Ok((
        listener,
        SocketFile {
            path: path.to_owned(),
            ino: meta.ino(),
            dev: meta.dev(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn mode_is_applied_and_a_live_socket_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/outbox.sock");
        let (_listener, file) = bind(&path, 0o600).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(matches!(bind(&path, 0o600), Err(SocketError::InUse(_))));
        file.remove();
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn a_stale_socket_is_replaced_and_a_regular_file_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(
            path.exists(),
            "a dropped std listener leaves its file behind, like a crash"
        );
        let (_listener, _file) = bind(&path, 0o660).unwrap();

        let plain = dir.path().join("plain");
        std::fs::write(&plain, "x").unwrap();
        assert!(matches!(
            bind(&plain, 0o660),
            Err(SocketError::NotASocket(_))
        ));
    }
}
