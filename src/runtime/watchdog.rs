//! systemd's watchdog, fed only while the daemon really works: every watched loop has
//! gone round recently, the database answers, and every liveness check passes (the
//! committer stores an empty group end to end). A stuck loop, database or committer stops
//! the pings, and systemd restarts the service.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::systemd::{self, Heartbeat};
use crate::store::Store;

/// A liveness check: true while the part it asks is alive. Given as a function so the
/// watchdog needs to know nothing of the parts (the committer lives in `ingest`).
pub type Check = Box<dyn Fn() -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

/// Pings systemd's watchdog every `interval` while [`alive`] says so.
pub async fn run(
    store: Store,
    interval: Duration,
    beats: Vec<Arc<Heartbeat>>,
    checks: Vec<Check>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        if alive(&store, interval, &beats, &checks).await {
            systemd::notify("WATCHDOG=1");
        }
    }
}

/// Whether the daemon works: the database answers, every watched loop has gone round
/// within `interval`, and every check passes within `interval`. Says why when not.
pub async fn alive(
    store: &Store,
    interval: Duration,
    beats: &[Arc<Heartbeat>],
    checks: &[Check],
) -> bool {
    let store_ok = matches!(
        tokio::time::timeout(interval, store.ping()).await,
        Ok(Ok(()))
    );
    let loops_ok = beats.iter().all(|b| b.age() < interval);
    let mut checks_ok = true;
    for check in checks {
        checks_ok &= tokio::time::timeout(interval, check())
            .await
            .unwrap_or(false);
    }
    let ok = store_ok && loops_ok && checks_ok;
    if !ok {
        warn!(
            store_ok,
            loops_ok, checks_ok, "not pinging the watchdog: the daemon looks stuck"
        );
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::committer::Committer;

    fn committer_check(committer: Committer) -> Check {
        Box::new(move || {
            let committer = committer.clone();
            Box::pin(async move { committer.ping().await.is_ok() })
        })
    }

    #[tokio::test]
    async fn a_dead_committer_stops_the_pings() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("outbox.db"), Duration::from_secs(1))
            .await
            .unwrap();
        let (committer, task) = Committer::spawn(store.clone(), Default::default());
        let beat = Arc::new(Heartbeat::default());
        let interval = Duration::from_secs(1);
        let checks = vec![committer_check(committer)];
        assert!(alive(&store, interval, std::slice::from_ref(&beat), &checks).await);
        task.abort();
        let _ = task.await;
        assert!(
            !alive(&store, interval, &[beat], &checks).await,
            "the committer is gone: no ping"
        );
    }
}
