//! Who is on the other end of a socket connection, from the kernel (`SO_PEERCRED`), and
//! who may change writes over the socket: the daemon's own user, root, and the users and
//! groups in `socket.operators`. Producers (anyone who may connect) enqueue and read.

use std::collections::HashSet;

use nix::unistd::{Group, Uid, User};
use tokio::net::UnixStream;

use crate::config::{Operator, OperatorKind};

/// The peer's credentials as the kernel gave them when it connected; `None` when it would
/// not say (then only reading and enqueueing are allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

impl Peer {
    /// The credentials of the process that connected `stream`.
    pub fn of(stream: &UnixStream) -> Self {
        match stream.peer_cred() {
            Ok(cred) => Self {
                uid: Some(cred.uid()),
                gid: Some(cred.gid()),
            },
            Err(_) => Self {
                uid: None,
                gid: None,
            },
        }
    }
}

/// `socket.operators` resolved to ids when the daemon starts.
#[derive(Debug, Clone, Default)]
pub struct Operators {
    /// The daemon's own (effective) user.
    pub own_uid: u32,
    pub uids: HashSet<u32>,
    /// Groups by id and name (a member may have it as a supplementary group, which the
    /// kernel's credentials do not carry).
    pub groups: Vec<(u32, Vec<String>)>,
}

#[derive(Debug, thiserror::Error)]
#[error("socket.operators: {0}")]
pub struct OperatorsError(String);

impl Operators {
    /// Looks the configured names up; an unknown name stops the daemon at start.
    pub fn resolve(entries: &[Operator]) -> Result<Self, OperatorsError> {
        let mut out = Self {
            own_uid: nix::unistd::geteuid().as_raw(),
            ..Self::default()
        };
        for entry in entries {
            let lookup =
                |e: nix::Error| OperatorsError(format!("looking up `{}`: {e}", entry.name));
            match entry.kind {
                OperatorKind::User => {
                    let user = User::from_name(&entry.name)
                        .map_err(lookup)?
                        .ok_or_else(|| OperatorsError(format!("no user named `{}`", entry.name)))?;
                    out.uids.insert(user.uid.as_raw());
                }
                OperatorKind::Group => {
                    let group =
                        Group::from_name(&entry.name)
                            .map_err(lookup)?
                            .ok_or_else(|| {
                                OperatorsError(format!("no group named `{}`", entry.name))
                            })?;
                    out.groups.push((group.gid.as_raw(), group.mem));
                }
            }
        }
        Ok(out)
    }

    /// Whether `peer` may change writes; the refusal says who may.
    pub fn may_operate(&self, peer: Peer) -> Result<(), String> {
        let who_may = format!(
            "operator actions over the socket are allowed to the daemon's own user (uid {}), \
             root, and the users and groups in socket.operators",
            self.own_uid
        );
        let Some(uid) = peer.uid else {
            return Err(format!("{who_may}; the kernel did not say who you are"));
        };
        if uid == 0 || uid == self.own_uid || self.uids.contains(&uid) {
            return Ok(());
        }
        if let Some(gid) = peer.gid
            && self.groups.iter().any(|(g, _)| *g == gid)
        {
            return Ok(());
        }
        if !self.groups.is_empty()
            && let Ok(Some(user)) = User::from_uid(Uid::from_raw(uid))
            && self
                .groups
                .iter()
                .any(|(g, members)| *g == user.gid.as_raw() || members.contains(&user.name))
        {
            return Ok(());
        }
        Err(format!("{who_may}; uid {uid} is not among them"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daemons_user_root_and_listed_users_may_operate_and_no_one_else() {
        let ops = Operators {
            own_uid: 1000,
            uids: [1234].into(),
            groups: vec![(4321, vec![])],
        };
        let peer = |uid, gid| Peer {
            uid: Some(uid),
            gid: Some(gid),
        };
        assert!(ops.may_operate(peer(1000, 1000)).is_ok());
        assert!(ops.may_operate(peer(0, 0)).is_ok());
        assert!(ops.may_operate(peer(1234, 99)).is_ok());
        assert!(ops.may_operate(peer(77, 4321)).is_ok(), "by the group");
        let refused = ops.may_operate(peer(4_000_000, 4_000_000)).unwrap_err();
        assert!(
            refused.contains("uid 1000") && refused.contains("uid 4000000 is not among them"),
            "{refused}"
        );
        assert!(
            ops.may_operate(Peer {
                uid: None,
                gid: None
            })
            .is_err()
        );
    }

    #[test]
    fn unknown_names_are_refused_at_start() {
        let e = Operators::resolve(&[Operator {
            kind: OperatorKind::User,
            name: "no-such-user-hubspot-outbox".into(),
        }])
        .unwrap_err();
        assert!(e.to_string().contains("no user named"), "{e}");
        let root = Operators::resolve(&[Operator {
            kind: OperatorKind::Group,
            name: "root".into(),
        }])
        .unwrap();
        assert_eq!(root.groups[0].0, 0);
    }
}
