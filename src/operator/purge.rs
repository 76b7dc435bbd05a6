//! `purge`: deleting succeeded or discarded writes, and their history, older than a
//! duration. Failed and unconfirmed writes are never purged: discard them first.

use std::time::Duration;

use chrono::Utc;
use serde_json::json;

use super::{OpsError, open_write};
use crate::config::Config;
use crate::store::ops::Purgeable;
use crate::store::timestamp;

/// `purge [--succeeded-older-than D] [--discarded-older-than D]`.
pub async fn purge(
    config: &Config,
    succeeded: Option<Duration>,
    discarded: Option<Duration>,
    dry_run: bool,
    as_json: bool,
) -> Result<Vec<String>, OpsError> {
    if succeeded.is_none() && discarded.is_none() {
        return Err(OpsError::Usage(
            "say what to purge: --succeeded-older-than and/or --discarded-older-than".into(),
        ));
    }
    let store = open_write(config).await?;
    let mut out = Vec::new();
    for (state, age) in [
        (Purgeable::Succeeded, succeeded),
        (Purgeable::Discarded, discarded),
    ] {
        let Some(age) = age else { continue };
        let before = crate::model::earlier(Utc::now(), age);
        let n = if dry_run {
            store.count_purgeable(state, before).await?
        } else {
            store.purge(state, before).await?
        };
        let before = timestamp(before);
        let name = state.as_str();
        out.push(if as_json {
            json!({"action": "purge", "state": name, "dryRun": dry_run, "writes": n, "before": before}).to_string()
        } else if dry_run {
            format!("would purge {n} {name} write(s)")
        } else {
            format!("purged {n} {name} write(s) last changed before {before}")
        });
    }
    store.close().await;
    Ok(out)
}
