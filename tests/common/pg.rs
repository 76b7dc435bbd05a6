//! A PostgreSQL server of the test's own: `initdb` and `pg_ctl` in a temporary directory,
//! on a free port of 127.0.0.1, stopped when dropped. Where PostgreSQL's programs are not
//! installed (Debian's package `postgresql`), [`PgServer::start`] says so and returns
//! `None`, and the test skips, unless `HUBSPOT_OUTBOX_REQUIRE_POSTGRES` is set (CI sets
//! it). `initdb` refuses to run as root, so as root the server runs as `nobody`.
//!
//! [`shared`] is one server for a whole test binary, each test in a database of its own
//! ([`fresh_database`]): a server start costs about a second, a database a few
//! milliseconds. A static is never dropped, so a watcher process stops that server and
//! removes its directory once the test binary has exited, however it exits.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

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
        Self::start_with(false)
    }

    /// [`PgServer::start`] with `fsync` on, as a production server runs (benchmarks).
    pub fn start_durable() -> Option<Self> {
        Self::start_with(true)
    }

    fn start_with(fsync: bool) -> Option<Self> {
        let Some(bin) = bin_dir() else {
            // CI installs PostgreSQL and sets this, so a skip there is a failure, not a
            // quiet pass.
            assert!(
                std::env::var_os("HUBSPOT_OUTBOX_REQUIRE_POSTGRES").is_none(),
                "HUBSPOT_OUTBOX_REQUIRE_POSTGRES is set but PostgreSQL's initdb and pg_ctl were not found"
            );
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
                "-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync={} -c max_connections=300",
                if fsync { "on" } else { "off" }
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

    /// The server's `psql`, connected to `url`, printing rows as `a|b` (like the
    /// `sqlite3` shell's default).
    pub fn psql(&self, url: &str, sql: &str) -> std::process::Output {
        Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                url,
                "-c",
                sql,
            ])
            .output()
            .unwrap()
    }
}

static SHARED: OnceLock<Option<PgServer>> = OnceLock::new();

/// The test binary's one server, started by the first test that asks (see the module's
/// doc); `None` where PostgreSQL is not installed.
pub fn shared() -> Option<&'static PgServer> {
    SHARED
        .get_or_init(|| {
            let server = PgServer::start()?;
            // Stops the server and removes its files after this process exits.
            let data = server.data.display().to_string();
            let pg_ctl = server.bin.join("pg_ctl").display().to_string();
            let stop = if server.as_nobody {
                format!("runuser -u nobody -- {pg_ctl} -D {data} -m immediate -w stop")
            } else {
                format!("{pg_ctl} -D {data} -m immediate -w stop")
            };
            let dir = server.data.parent().unwrap().display().to_string();
            let script = format!(
                "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {stop} >/dev/null 2>&1; rm -rf {dir}",
                pid = std::process::id()
            );
            // Started in the background of a shell that exits at once, so the watcher
            // outlives this process (it is no child of ours to wait for).
            let started = Command::new("sh")
                .args(["-c", &format!("({script}) </dev/null >/dev/null 2>&1 &")])
                .stdin(Stdio::null())
                .status()
                .unwrap();
            assert!(started.success());
            Some(server)
        })
        .as_ref()
}

/// A new, empty database on the shared server, and its URL.
pub fn fresh_database() -> Option<String> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let server = shared()?;
    let name = format!("t{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let out = server.psql(&server.url, &format!("CREATE DATABASE {name}"));
    assert!(
        out.status.success(),
        "CREATE DATABASE: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (server_url, _) = server.url.rsplit_once('/').unwrap();
    Some(format!("{server_url}/{name}"))
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
