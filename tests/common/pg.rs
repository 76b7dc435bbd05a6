//! A PostgreSQL server of the test's own: `initdb` and `pg_ctl` in a temporary directory,
//! on a free port of 127.0.0.1, stopped when dropped. Where PostgreSQL's programs are not
//! installed (Debian's package `postgresql`), [`PgServer::start`] says so and returns
//! `None`, and the test skips. `initdb` refuses to run as root, so as root the server runs
//! as `nobody`.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct PgServer {
    pub url: String,
    bin: PathBuf,
    data: PathBuf,
    as_nobody: bool,
    _dir: tempfile::TempDir,
}

/// Where `initdb` and `pg_ctl` are: Debian's `/usr/lib/postgresql/<version>/bin` (newest
/// first), else the PATH.
fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists() && b.join("pg_ctl").exists())
        .collect();
    versions.sort_by_key(|b| {
        b.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions.pop().or_else(|| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .find(|p| p.join("initdb").exists() && p.join("pg_ctl").exists())
        })
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A port nobody listens on now (PostgreSQL cannot take port 0 and report it).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl PgServer {
    /// A running server with database `postgres` and trusted local logins, or `None` (with
    /// a line saying why) where PostgreSQL is not installed.
    pub fn start() -> Option<Self> {
        let Some(bin) = bin_dir() else {
            eprintln!(
                "SKIPPED: PostgreSQL's initdb and pg_ctl were not found (install Debian's package `postgresql`)"
            );
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let as_nobody = is_root();
        if as_nobody {
            // The server's user must own its directories, and reach them.
            std::fs::set_permissions(
                dir.path(),
                std::os::unix::fs::PermissionsExt::from_mode(0o777),
            )
            .unwrap();
        }
        let data = dir.path().join("data");
        let mut server = Self {
            url: String::new(),
            bin,
            data,
            as_nobody,
            _dir: dir,
        };
        let data = server.data.display().to_string();
        let init = server
            .command("initdb")
            .args([
                "-D",
                &data,
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
            ])
            .output()
            .unwrap();
        assert!(
            init.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        // A port taken between picking it and the server binding it: pick another.
        for _ in 0..5 {
            let port = free_port();
            let sockets = server.data.parent().unwrap().display().to_string();
            let options = format!(
                "-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50"
            );
            let log = server.data.parent().unwrap().join("server.log");
            let started = server
                .command("pg_ctl")
                .args([
                    "-D",
                    &data,
                    "-o",
                    &options,
                    "-l",
                    &log.display().to_string(),
                    "-w",
                    "start",
                ])
                .output()
                .unwrap();
            if started.status.success() {
                server.url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
                return Some(server);
            }
        }
        panic!(
            "the PostgreSQL server did not start (see its log in {})",
            server.data.display()
        );
    }

    /// One of the server's programs, run as `nobody` when this process is root.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_nobody {
            let mut c = Command::new("runuser");
            c.args(["-u", "nobody", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let data = self.data.display().to_string();
        let _ = self
            .command("pg_ctl")
            .args(["-D", &data, "-m", "immediate", "-w", "stop"])
            .output();
    }
}
