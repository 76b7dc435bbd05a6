//! Recovery at start: rows a crash or kill left `in_flight` have no task sending them.
//! HubSpot may have created them, so each batch of them is reconciled as if its request
//! had gone unanswered, by the same rules as a timeout.

use std::collections::HashMap;
use std::time::Duration;

use tracing::warn;

use super::settle::plan_for;
use super::shared::Shared;
use crate::hubspot::classify::transport_failure;
use crate::model::{BatchLogEntry, ClaimedRow};
use crate::store::StoreError;

impl<S> Shared<S> {
    /// Settles every row left in flight by an earlier run: resent (with a unique property
    /// or `on_ambiguous = "resend"`) or held, and the error history says why. Returns how
    /// many rows were recovered.
    pub async fn recover(&self) -> Result<usize, StoreError> {
        let rows = self.store.in_flight_rows().await?;
        let mut batches: HashMap<(String, String), Vec<ClaimedRow>> = HashMap::new();
        for r in rows {
            batches
                .entry((r.batch_id, r.object_type))
                .or_default()
                .push(r.row);
        }
        let mut recovered = 0;
        for ((batch, object_type), rows) in batches {
            let answer =
                transport_failure("interrupted: the daemon stopped while this write was in flight");
            let plan = plan_for(&self.config, &object_type, &rows, &answer, (self.jitter)());
            let now = self.clock.now();
            let log = BatchLogEntry {
                batch_id: batch.clone(),
                object_type: object_type.clone(),
                size: rows.len(),
                http_status: 0,
                outcome: "interrupted".into(),
                duration: Duration::ZERO,
                correlation_id: None,
                sent_at: now,
            };
            self.store
                .settle_batch(&batch, &plan, Some(&log), now)
                .await?;
            warn!(%object_type, batch_id = %batch, rows = rows.len(), "recovered writes left in flight by an earlier run");
            recovered += rows.len();
        }
        Ok(recovered)
    }
}
