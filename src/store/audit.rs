//! The audit log (issue 13): every change an operator makes to writes (retry, discard,
//! edit-then-retry), by whom, through what, to which writes and to how many. A change and
//! its audit line are one transaction, so the log never misses a change nor records one
//! that was rolled back. Dry runs change nothing and are not recorded.

use async_trait::async_trait;

use super::StoreError;

/// Who made a change and through what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// A Unix user (`alice (uid 1000)`) or a dashboard login name.
    pub who: String,
    /// `command` (the command line), `socket` (`POST /v1/retry`), `dashboard` (the
    /// dashboard on the socket) or `dashboard-tcp` (the dashboard on `ui.listen`).
    pub via: &'static str,
}

impl Actor {
    /// A Unix user by uid, named as the system names it (`alice (uid 1000)`); `None` when
    /// the kernel would not say who connected.
    pub fn unix(uid: Option<u32>, via: &'static str) -> Self {
        let who = match uid {
            None => "unknown user".to_owned(),
            Some(uid) => match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
                Ok(Some(user)) => format!("{} (uid {uid})", user.name),
                _ => format!("uid {uid}"),
            },
        };
        Self { who, via }
    }

    /// Whoever runs this command.
    pub fn this_process() -> Self {
        Self::unix(Some(nix::unistd::getuid().as_raw()), "command")
    }
}

/// What a change was, as its audit line records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change<'a> {
    /// `retry`, `discard` or `edit`.
    pub action: &'static str,
    /// Which writes, in words (trace ids, or the filter).
    pub target: &'a str,
    /// For an edit: what was changed (property names, not values).
    pub detail: Option<&'a str>,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditLine {
    pub id: i64,
    pub at: String,
    pub who: String,
    pub via: String,
    pub action: String,
    pub target: String,
    pub writes: i64,
    pub detail: Option<String>,
}

#[async_trait]
pub trait AuditStore: Send + Sync {
    /// The audit log, newest first, at most `limit` lines, older than `before_id` when
    /// given (the next page).
    async fn audit_log(
        &self,
        before_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditLine>, StoreError>;
}
