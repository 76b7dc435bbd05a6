//! Recovery at start: rows a crash or kill left `in_flight` have no task sending them.
//! HubSpot may have created them, so each batch of them is reconciled as if its request
//! had gone unanswered, by the same rules as a timeout: read back first where they can be
//! (by the trace property their create carried, or their unique value), else held or
//! resent by `on_ambiguous`. A read interrupted is simply read again.

use std::collections::HashMap;
use std::time::Duration;

use tracing::{error, warn};

use super::reconciler::Moment;
use super::settle::plan_for;
use super::shared::Shared;
use crate::hubspot::classify::transport_failure;
use crate::model::{BatchLogEntry, ClaimedRow};
use crate::store::StoreError;

impl<S> Shared<S> {
    /// Settles every row left in flight by an earlier run: to be read back, held or
    /// resent, and the error history says why. A batch that
    /// cannot be settled is logged and left for the next start; the others still are.
    /// Returns how many rows were recovered.
    pub async fn recover(&self) -> Result<usize, StoreError> {
        let rows = self.store.in_flight_rows().await?;
        let mut batches: HashMap<(String, String, Option<String>), Vec<ClaimedRow>> =
            HashMap::new();
        for r in rows {
            batches
                .entry((r.batch_id, r.object_type, r.sent_with))
                .or_default()
                .push(r.row);
        }
        let mut recovered = 0;
        for ((batch, object_type, sent_with), rows) in batches {
            let answer =
                transport_failure("interrupted: the daemon stopped while this write was in flight");
            let now = self.clock.now();
            let moment = Moment {
                now,
                jitter: (self.jitter)(),
            };
            let plan = plan_for(
                &self.config,
                &object_type,
                sent_with,
                &rows,
                &answer,
                moment,
            );
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
            // One batch that cannot be settled does not stop the others.
            match self
                .store
                .settle_batch(&batch, &plan, Some(&log), now)
                .await
            {
                Ok(_) => {
                    warn!(%object_type, batch_id = %batch, rows = rows.len(), "recovered writes left in flight by an earlier run");
                    recovered += rows.len();
                }
                Err(e) => {
                    error!(%object_type, batch_id = %batch, error = %e,
                           "recovering writes left in flight failed; they stay in flight until the next start");
                }
            }
        }
        Ok(recovered)
    }
}
