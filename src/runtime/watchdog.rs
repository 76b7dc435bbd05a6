//! systemd's watchdog, fed only while the daemon really works: every watched loop has
//! gone round recently and the database answers. A stuck loop or database stops the
//! pings, and systemd restarts the service.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::systemd::{self, Heartbeat};
use crate::store::Store;

/// Pings systemd's watchdog every `interval` while the database answers and every watched
/// loop has gone round within `interval`; a stuck loop or database stops the pings.
pub async fn run(
    store: Store,
    interval: Duration,
    beats: Vec<Arc<Heartbeat>>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let store_ok = matches!(
            tokio::time::timeout(interval, store.ping()).await,
            Ok(Ok(()))
        );
        let loops_ok = beats.iter().all(|b| b.age() < interval);
        if store_ok && loops_ok {
            systemd::notify("WATCHDOG=1");
        } else {
            warn!(
                store_ok,
                loops_ok, "not pinging the watchdog: the daemon looks stuck"
            );
        }
    }
}
