//! Shared test harness: a daemon served in-process on a temporary database and socket, or
//! the real binary run as a child process, plus the socket client.
#![allow(dead_code)]

pub mod browser;
pub mod json_gen;
pub mod pg;
pub mod sim;
pub mod web;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hubspot_outbox::config::{Config, MapEnv};
use hubspot_outbox::ingest::socket::listener::bind;
use hubspot_outbox::operator::client::SocketClient;
use hubspot_outbox::store::Store;
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const BIN: &str = env!("CARGO_BIN_EXE_hubspot-outbox");

/// Where a test's outbox lives: the SQLite file in the test's directory, or a fresh
/// database of its own on the test binary's PostgreSQL server (see [`pg::shared`]).
#[derive(Clone, Debug)]
pub enum Backend {
    Sqlite,
    Postgres(String),
}

impl Backend {
    /// A fresh PostgreSQL database; `None` (the reason printed) where PostgreSQL is not
    /// installed.
    pub fn postgres() -> Option<Self> {
        pg::fresh_database().map(Self::Postgres)
    }

    /// A backend of the same kind with an outbox of its own: for a test that starts
    /// several daemons that must not share one (SQLite's file is per directory already).
    pub fn another(&self) -> Self {
        match self {
            Self::Sqlite => Self::Sqlite,
            Self::Postgres(_) => Self::postgres().expect("the server is running"),
        }
    }

    /// The settings that select this backend.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::Sqlite => Vec::new(),
            Self::Postgres(url) => vec![("HUBSPOT_OUTBOX__DATABASE__URL", url.clone())],
        }
    }
}

/// Declares each test twice, as `name::sqlite` and `name::postgres` (the latter skipped,
/// saying so, where PostgreSQL is not installed): the same body, handed the
/// [`Backend`] to start its daemon on. Multi-threaded, so a database shell run by the test
/// never holds up the daemon it waits for.
///
/// ```ignore
/// on_both_backends! {
///     async fn a_write_is_sent(db) { let d = start_daemon_on(&db, &env).await; ... }
/// }
/// ```
#[macro_export]
macro_rules! on_both_backends {
    ($($(#[$meta:meta])* async fn $name:ident($db:ident) $body:block)*) => {$(
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($db: $crate::common::Backend) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run($crate::common::Backend::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(db) = $crate::common::Backend::postgres() {
                    run(db).await
                }
            }
        }
    )*};
}

/// A config whose database and socket live in `dir`, plus extra `HUBSPOT_OUTBOX__` pairs.
pub fn config_in(dir: &Path, extra: &[(&str, &str)]) -> Config {
    let mut env: HashMap<String, String> = HashMap::new();
    env.insert("HOME".into(), dir.display().to_string());
    env.insert(
        "HUBSPOT_OUTBOX__DATABASE__PATH".into(),
        dir.join("outbox.db").display().to_string(),
    );
    env.insert(
        "HUBSPOT_OUTBOX__SOCKET__PATH".into(),
        dir.join("outbox.sock").display().to_string(),
    );
    env.insert(
        "HUBSPOT_OUTBOX__DATABASE__POLL_INTERVAL".into(),
        "50ms".into(),
    );
    // Tests must not depend on the free space of the machine's disk.
    env.insert("HUBSPOT_OUTBOX__QUEUE__MIN_FREE_DISK".into(), "0".into());
    for (k, v) in extra {
        env.insert((*k).into(), (*v).into());
    }
    Config::load(None, &MapEnv(env)).expect("test config is valid")
}

/// A daemon served in this process (the same `app::serve` the binary runs).
pub struct InProcess {
    pub dir: TempDir,
    pub backend: Backend,
    pub config: Config,
    pub store: Store,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl InProcess {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    pub async fn start_with(extra: &[(&str, &str)]) -> Self {
        Self::start_on_backend(&Backend::Sqlite, extra).await
    }

    /// A daemon on `backend`'s outbox, with extra settings.
    pub async fn start_on_backend(backend: &Backend, extra: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let backend_env = backend.env();
        let mut all: Vec<(&str, &str)> =
            backend_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        all.extend_from_slice(extra);
        let config = config_in(dir.path(), &all);
        Self::start_on(dir, backend.clone(), config).await
    }

    /// Stops this daemon and starts a new one on the same database and settings.
    pub async fn restart(self) -> Self {
        self.shutdown.cancel();
        self.task.await.unwrap();
        self.store.close().await;
        Self::start_on(self.dir, self.backend, self.config).await
    }

    async fn start_on(dir: TempDir, backend: Backend, config: Config) -> Self {
        let store = match &config.database.url {
            Some(url) => Store::connect(
                url.expose(),
                config.database.max_connections,
                hubspot_outbox::store::Role::Daemon,
            )
            .await
            .unwrap(),
            None => Store::open_limited(
                &config.database.path,
                config.database.busy_timeout,
                config.database.max_size,
            )
            .await
            .unwrap(),
        };
        let (listener, file) = bind(&config.socket.path, config.socket.mode).unwrap();
        let shutdown = CancellationToken::new();
        let task = {
            let (config, store, shutdown) = (config.clone(), store.clone(), shutdown.clone());
            tokio::spawn(async move {
                hubspot_outbox::app::serve(&config, store, listener, file, shutdown)
                    .await
                    .unwrap();
            })
        };
        Self {
            dir,
            backend,
            config,
            store,
            shutdown,
            task,
        }
    }

    /// The SQL that reads `path` (SQLite's form: `$[0].to.id`) out of the JSON `column`,
    /// as text, in this backend's dialect.
    pub fn json_at(&self, column: &str, path: &str) -> String {
        match &self.backend {
            Backend::Sqlite => format!("{column} ->> '{path}'"),
            Backend::Postgres(_) => {
                let steps: Vec<&str> = path
                    .trim_start_matches('$')
                    .split(['.', '[', ']'])
                    .filter(|s| !s.is_empty())
                    .collect();
                format!("{column} #>> '{{{}}}'", steps.join(","))
            }
        }
    }

    /// Runs `sql` on the outbox with the database's own shell (`sqlite3` or `psql`), as a
    /// producer would, whether it succeeds or not.
    pub fn sql_output(&self, sql: &str) -> std::process::Output {
        match &self.backend {
            Backend::Sqlite => sqlite3(&self.db_path(), sql),
            Backend::Postgres(url) => pg::shared().unwrap().psql(url, sql),
        }
    }

    /// Runs `sql` on the outbox with the database's own shell (`sqlite3` or `psql`) and
    /// returns its rows as `a|b` lines; panics if the statement fails.
    pub fn sql(&self, sql: &str) -> String {
        let out = self.sql_output(sql);
        assert!(
            out.status.success(),
            "`{sql}` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    pub async fn client(&self) -> SocketClient {
        SocketClient::connect(&self.config.socket.path)
            .await
            .unwrap()
    }

    pub fn db_path(&self) -> PathBuf {
        self.config.database.path.clone()
    }

    pub async fn rows(&self) -> i64 {
        self.store.count_writes().await.unwrap()
    }

    pub async fn stop(self) {
        self.stop_keeping().await;
    }

    /// Stops this daemon and hands back its directory (with the SQLite outbox) instead of
    /// removing it.
    pub async fn stop_keeping(self) -> TempDir {
        self.shutdown.cancel();
        self.task.await.unwrap();
        self.store.close().await;
        self.dir
    }
}

/// The real binary as a child process.
pub struct Daemon {
    pub child: Child,
    pub socket: PathBuf,
    pub database: PathBuf,
    pub log: PathBuf,
}

/// The command that runs the binary on `dir`'s database and socket, with a clean
/// environment (no token, no inherited HUBSPOT_OUTBOX__ settings).
pub fn daemon_command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("HUBSPOT_OUTBOX__DATABASE__PATH", dir.join("outbox.db"))
        .env("HUBSPOT_OUTBOX__SOCKET__PATH", dir.join("outbox.sock"))
        .env("HUBSPOT_OUTBOX__DATABASE__POLL_INTERVAL", "50ms")
        .env("HUBSPOT_OUTBOX__QUEUE__MIN_FREE_DISK", "0")
        .stdin(Stdio::null());
    cmd
}

impl Daemon {
    /// Starts `hubspot-outbox run` and waits until `/healthz` answers.
    pub async fn start(dir: &Path) -> Self {
        Self::start_with(dir, &[]).await
    }

    /// [`Daemon::start_with`] on `backend`'s outbox.
    pub async fn start_on(backend: &Backend, dir: &Path, env: &[(&str, &str)]) -> Self {
        let backend_env = backend.env();
        let mut all: Vec<(&str, &str)> =
            backend_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        all.extend_from_slice(env);
        Self::start_with(dir, &all).await
    }

    /// Like [`Daemon::start`], with extra environment variables.
    pub async fn start_with(dir: &Path, env: &[(&str, &str)]) -> Self {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let log = dir.join(format!("daemon-{stamp}.log"));
        let log_file = std::fs::File::create(&log).unwrap();
        let child = daemon_command(dir, &["run"])
            .envs(env.iter().copied())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap();
        let daemon = Self {
            child,
            socket: dir.join("outbox.sock"),
            database: dir.join("outbox.db"),
            log,
        };
        daemon.wait_ready().await;
        daemon
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(mut c) = SocketClient::connect(&self.socket).await
                && let Ok(a) = c.get("/healthz").await
                && a.status == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("daemon did not become ready; log:\n{}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn client(&self) -> SocketClient {
        SocketClient::connect(&self.socket).await.unwrap()
    }

    /// SIGKILL: no cleanup of any kind runs.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then waits for the exit code.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "daemon ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A producer's shell on `backend`'s outbox: `sqlite3` on the file at `path`, or `psql`
/// on the PostgreSQL database (`path` then unused). Rows come back as `a|b` lines.
#[derive(Clone, Debug)]
pub struct Shell {
    pub backend: Backend,
    pub path: PathBuf,
}

impl Shell {
    pub fn new(backend: &Backend, path: &Path) -> Self {
        Self {
            backend: backend.clone(),
            path: path.to_owned(),
        }
    }

    /// Runs `sql`, whether it succeeds or not.
    pub fn output(&self, sql: &str) -> std::process::Output {
        match &self.backend {
            Backend::Sqlite => sqlite3(&self.path, sql),
            Backend::Postgres(url) => pg::shared().unwrap().psql(url, sql),
        }
    }

    /// The rows of `sql`; panics if it fails.
    pub fn lines(&self, sql: &str) -> Vec<String> {
        let out = self.output(sql);
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The rows of `sql` as one text, a line each.
    pub fn text(&self, sql: &str) -> String {
        self.lines(sql).join("\n")
    }

    /// How many writes match `filter`.
    pub fn count(&self, filter: &str) -> usize {
        self.text(&format!("SELECT count(*) FROM outbox WHERE {filter}"))
            .parse()
            .unwrap()
    }
}

/// Runs the `sqlite3` shell on `db` with a busy timeout, as a producer would.
pub fn sqlite3(db: &Path, sql: &str) -> std::process::Output {
    Command::new("sqlite3")
        .arg("-cmd")
        .arg(".timeout 5000")
        .arg(db)
        .arg(sql)
        .output()
        .expect("the sqlite3 shell is installed (apt-get install sqlite3)")
}

/// Polls `check` until it holds or 10 s pass.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for: {what}");
}
