//! The dashboard's logins on TCP, in memory: a session is a random id (the cookie), the
//! user, their role and their CSRF token. A session ends at logout, after
//! `ui.session_timeout` without a request, or when the daemon stops (everyone logs in
//! again after a restart). A user has at most [`MAX_PER_USER`] sessions (a new login ends
//! their own idlest), so no user's logins end anyone else's; at most [`MAX_SESSIONS`] live
//! at once, past which a new login ends the one idle longest.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::ui::csrf::new_token;

/// Most sessions at once.
pub const MAX_SESSIONS: usize = 1000;

/// Most sessions of one user at once.
pub const MAX_PER_USER: usize = 20;

/// One logged-in user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: String,
    pub operator: bool,
    pub csrf: String,
}

#[derive(Debug)]
struct Entry {
    session: Session,
    last_seen: Instant,
}

/// The live sessions.
#[derive(Debug)]
pub struct Sessions {
    timeout: Duration,
    live: Mutex<HashMap<String, Entry>>,
}

impl Sessions {
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            live: Mutex::new(HashMap::new()),
        }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new session for `user`; returns its id (the cookie's value).
    pub fn start(&self, user: &str, operator: bool) -> String {
        let now = Instant::now();
        let mut live = self.live();
        live.retain(|_, e| now.duration_since(e.last_seen) < self.timeout);
        let theirs = live.values().filter(|e| e.session.user == user).count();
        let idlest = |live: &HashMap<String, Entry>, only: Option<&str>| {
            live.iter()
                .filter(|(_, e)| only.is_none_or(|u| e.session.user == u))
                .min_by_key(|(_, e)| e.last_seen)
                .map(|(id, _)| id.clone())
        };
        let ended = match (theirs >= MAX_PER_USER, live.len() >= MAX_SESSIONS) {
            (true, _) => idlest(&live, Some(user)),
            (false, true) => idlest(&live, None),
            (false, false) => None,
        };
        if let Some(id) = ended {
            live.remove(&id);
        }
        let id = new_token();
        let session = Session {
            user: user.to_owned(),
            operator,
            csrf: new_token(),
        };
        live.insert(
            id.clone(),
            Entry {
                session,
                last_seen: now,
            },
        );
        id
    }

    /// The session `id` names, if it is live; seen now when `touch` (a request the user
    /// made, not a page refreshing itself).
    pub fn get(&self, id: &str, touch: bool) -> Option<Session> {
        let now = Instant::now();
        let mut live = self.live();
        let entry = live.get_mut(id)?;
        if now.duration_since(entry.last_seen) >= self.timeout {
            live.remove(id);
            return None;
        }
        if touch {
            entry.last_seen = now;
        }
        Some(entry.session.clone())
    }

    /// Ends session `id`.
    pub fn end(&self, id: &str) {
        self.live().remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn sessions_live_until_idle_for_the_timeout_or_ended() {
        let sessions = Sessions::new(Duration::from_secs(60));
        let id = sessions.start("ada", true);
        let s = sessions.get(&id, true).unwrap();
        assert_eq!(
            (s.user.as_str(), s.operator, s.csrf.len()),
            ("ada", true, 64)
        );
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(
            sessions.get(&id, true).is_some(),
            "a request keeps it alive"
        );
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(sessions.get(&id, true).is_some());
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(
            sessions.get(&id, true).is_none(),
            "idle for the timeout: ended"
        );
        let id = sessions.start("bob", false);
        sessions.end(&id);
        assert!(sessions.get(&id, true).is_none());
        assert!(sessions.get("made-up", true).is_none());
        let id = sessions.start("ada", true);
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(sessions.get(&id, false).is_some(), "looked at, not seen");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(
            sessions.get(&id, false).is_none(),
            "a refresh does not keep it alive"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn one_users_logins_end_only_their_own_sessions() {
        let sessions = Sessions::new(Duration::from_secs(3600));
        let ada = sessions.start("ada", true);
        let first_bob = sessions.start("bob", false);
        for _ in 0..MAX_PER_USER * 3 {
            tokio::time::advance(Duration::from_millis(1)).await;
            sessions.start("bob", false);
        }
        assert!(
            sessions.get(&ada, true).is_some(),
            "bob's logins leave ada's session"
        );
        assert!(
            sessions.get(&first_bob, true).is_none(),
            "bob's oldest ended"
        );
        let bobs = sessions
            .live()
            .values()
            .filter(|e| e.session.user == "bob")
            .count();
        assert_eq!(bobs, MAX_PER_USER);
    }
}
