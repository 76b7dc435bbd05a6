//! Wiring and shutdown order, nothing else: take the database, open the store, bind the
//! socket, start the tasks, and on shutdown stop them in the order that loses nothing.

use std::sync::Arc;

use tokio::net::UnixListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{self, Config};
use crate::dispatch::Dispatcher;
use crate::dispatch::sender::{HttpSender, SenderError};
use crate::ingest::capacity;
use crate::ingest::committer::Committer;
use crate::ingest::intake;
use crate::ingest::socket::budget::BodyBudget;
use crate::ingest::socket::conn::Timeouts;
use crate::ingest::socket::listener::{SocketError, SocketFile, bind};
use crate::ingest::socket::peer::{Operators, OperatorsError};
use crate::ingest::socket::routes::{ApiState, router};
use crate::ingest::socket::server::{self, ServerLimits};
use crate::ingest::web;
use crate::runtime::lock::{LockError, OwnerLock};
use crate::runtime::metrics::Metrics;
use crate::runtime::retention;
use crate::runtime::systemd::{self, Heartbeat};
use crate::runtime::watchdog;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("cannot open the outbox `{path}`: {source}")]
    Store { path: String, source: StoreError },
    #[error(transparent)]
    Socket(#[from] SocketError),
    #[error("cannot create `{path}`: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Sender(#[from] SenderError),
    #[error(transparent)]
    Operators(#[from] OperatorsError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("ui.listen: cannot listen on {addr}: {source}")]
    Dashboard {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// Runs the daemon until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), AppError> {
    let (store, _owner) = open(&config).await?;
    let (listener, socket_file) = bind(&config.socket.path, config.socket.mode)?;
    info!(
        database = %config.database.name(),
        socket = %config.socket.path.display(),
        version = env!("CARGO_PKG_VERSION"),
        "hubspot-outbox started"
    );
    match &config.access_token {
        None => warn!(
            "no HubSpot access token is configured (set {} or hubspot.access_token_file): \
             writes are accepted and stored, but nothing will be sent until a token is set",
            config::TOKEN_ENV
        ),
        Some(_) => info!(
            url = %config.hubspot.batch_create_url("{objectType}"),
            requests_per_interval = config.rate_limit.requests_per_interval,
            interval = ?config.rate_limit.interval,
            daily_limit = config.rate_limit.daily_limit,
            max_in_flight = config.rate_limit.max_in_flight,
            "sending to HubSpot"
        ),
    }
    let result = serve(&config, store.clone(), listener, socket_file, shutdown).await;
    store.close().await;
    info!("hubspot-outbox stopped");
    result
}

/// The outbox, and the lock that makes this daemon its only owner: the SQLite file's,
/// or on PostgreSQL (which several daemons share) the socket's. The lock comes first: a
/// second daemon must not touch the database or the socket.
async fn open(config: &Config) -> Result<(Store, OwnerLock), AppError> {
    let failed = |source| AppError::Store {
        path: config.database.name(),
        source,
    };
    let db = &config.database;
    if let Some(url) = &db.url {
        let socket = &config.socket.path;
        let owner = OwnerLock::acquire_for(socket, format!("socket `{}`", socket.display()))?;
        let store = Store::connect(url.expose(), db.max_connections, crate::store::Role::Daemon)
            .await
            .map_err(failed)?;
        return Ok((store, owner));
    }
    if let Some(dir) = db.path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| AppError::Dir {
            path: dir.display().to_string(),
            source,
        })?;
    }
    let owner = OwnerLock::acquire(&db.path)?;
    let store = Store::open_limited(&db.path, db.busy_timeout, db.max_size)
        .await
        .map_err(failed)?;
    Ok((store, owner))
}

/// Serves an opened store on a bound listener until `shutdown`; tests call it with their
/// own store and listener.
pub async fn serve(
    config: &Config,
    store: Store,
    listener: UnixListener,
    socket_file: SocketFile,
    shutdown: CancellationToken,
) -> Result<(), AppError> {
    // The dashboard's TCP address is bound first: a dashboard asked for and not served
    // stops the start, before anything else runs.
    let web_listener = match config.ui.listen {
        Some(addr) => {
            let users = config.ui.load_users()?;
            let listener = web::bind(addr)
                .await
                .map_err(|source| AppError::Dashboard { addr, source })?;
            Some((listener, users))
        }
        None => None,
    };
    // Notified when new rows become sendable (socket commits and validated SQL rows).
    let work = Arc::new(Notify::new());
    let (committer, committer_task) = Committer::spawn(store.clone(), work.clone());
    // The intake stops on its own token, after the server: it touches only SQL rows.
    let intake_stop = CancellationToken::new();
    // Each loop beats its heart; the watchdog pings systemd only while both are fresh.
    let intake_beat = Arc::new(Heartbeat::default());
    let dispatch_beat = Arc::new(Heartbeat::default());
    // The cap SQL producers' inserts are checked against, and the disk's state beside it.
    store
        .set_max_queued(config.queue.max_queued)
        .await
        .map_err(|source| AppError::Store {
            path: config.database.name(),
            source,
        })?;
    let capacity_task = tokio::spawn(capacity::monitor(
        store.clone(),
        config.queue.clone(),
        config.database.path.clone(),
        config
            .database
            .poll_interval
            .max(std::time::Duration::from_secs(1)),
        intake_stop.clone(),
    ));
    let retention_task = tokio::spawn(retention::run(
        store.clone(),
        config.retention.clone(),
        intake_stop.clone(),
    ));
    // Producers' commits wake the intake at once where the database says so.
    let inserted = Arc::new(Notify::new());
    if config.database.listen {
        store.listen(inserted.clone());
    }
    let intake_task = tokio::spawn(intake::run(
        store.clone(),
        Arc::new(config.clone()),
        work.clone(),
        inserted,
        intake_stop.clone(),
        intake_beat.clone(),
    ));
    // The dispatcher stops claiming at `shutdown` and lets requests in flight settle.
    // Counted by the dispatcher, rendered by `GET /metrics`.
    let metrics = Arc::new(Metrics::default());
    let dispatcher_task = match &config.access_token {
        Some(token) => {
            let sender = HttpSender::new(config.hubspot.clone(), token)?;
            let dispatcher = Arc::new(Dispatcher::new(
                store.clone(),
                Arc::new(config.clone()),
                sender,
                work.clone(),
                metrics.clone(),
            ));
            let drain = config.shutdown.drain_timeout;
            Some(tokio::spawn(dispatcher.run(
                shutdown.clone(),
                drain,
                dispatch_beat.clone(),
            )))
        }
        None => None,
    };
    if let Some(interval) = systemd::watchdog_interval() {
        let beats = if dispatcher_task.is_some() {
            vec![intake_beat, dispatch_beat]
        } else {
            vec![intake_beat]
        };
        // The committer is idle between requests, so it has no heartbeat: the watchdog
        // has it store an empty group instead. (This handle goes with the watchdog at
        // `shutdown`, before the committer is waited for.)
        let pinged = committer.clone();
        let committer_alive: watchdog::Check = Box::new(move || {
            let committer = pinged.clone();
            Box::pin(async move { committer.ping().await.is_ok() })
        });
        tokio::spawn(watchdog::run(
            store.clone(),
            interval,
            beats,
            vec![committer_alive],
            shutdown.clone(),
        ));
    }
    let state = ApiState {
        store: store.clone(),
        committer,
        operators: Arc::new(Operators::resolve(&config.socket.operators)?),
        limits: config.limits.clone(),
        config: Arc::new(config.clone()),
        metrics: metrics.clone(),
        budget: BodyBudget::new(config.limits.max_buffered_bytes),
        ui_token: crate::ui::csrf::new_token().into(),
    };
    // Both listeners: stop accepting first; requests already read finish and get their
    // answer.
    let limits = ServerLimits {
        max_connections: config.socket.max_connections,
        timeouts: Timeouts {
            idle: config.socket.idle_timeout,
            header: config.socket.header_timeout,
        },
        shutdown_timeout: config.socket.shutdown_timeout,
    };
    let web_task = web_listener.map(|(listener, users)| {
        tokio::spawn(web::serve(
            listener,
            state.clone(),
            users,
            limits,
            shutdown.clone(),
        ))
    });
    let app = router(state);
    // The socket is bound: connections queue from here on, so systemd may start producers.
    systemd::notify("READY=1");
    let stopping = shutdown.clone();
    tokio::spawn(async move {
        stopping.cancelled().await;
        systemd::notify("STOPPING=1");
    });
    server::serve(listener, app, limits, Some(metrics), shutdown.clone()).await;
    socket_file.remove();
    if let Some(task) = web_task {
        let _ = task.await;
    }
    // The router (and with it the last committer handle) is gone: the committer finishes
    // what was queued and exits.
    let _ = committer_task.await;
    if let Some(task) = dispatcher_task {
        let _ = task.await;
    }
    intake_stop.cancel();
    let _ = intake_task.await;
    let _ = capacity_task.await;
    let _ = retention_task.await;
    Ok(())
}
