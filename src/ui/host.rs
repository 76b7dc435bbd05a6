//! Which host names a browser may address the socket by. Behind `ssh -L` the dashboard is
//! `http://localhost:PORT`, and a page from anywhere may have its own name resolve to
//! 127.0.0.1 (DNS rebinding): its scripts are then "same origin" with the socket, may read
//! pages (and their form tokens) and post forms, all as the operator whose `ssh` holds
//! the socket. What such a request cannot change is the `Host` it carries, which names the
//! attacker's host: so a browser's request to the socket is answered only when it was
//! addressed to `localhost`, `127.0.0.1`, `[::1]`, or a name in `ui.allowed_hosts`.

/// The host `host` names (a `Host` header's value), without its port, lowercased:
/// `localhost:8080` → `localhost`, `[::1]:8080` → `[::1]`.
pub fn name_of(host: &str) -> String {
    let host = host.trim();
    let name = match host.strip_prefix('[') {
        Some(rest) => match rest.find(']') {
            Some(end) => &host[..end + 2],
            None => host,
        },
        None => match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        },
    };
    name.to_ascii_lowercase()
}

/// Whether a request addressed to `host` (its `Host` header; `None` when it had none) may
/// be answered for a browser: loopback names, or one of `allowed` (lowercased names).
pub fn allowed(host: Option<&str>, allowed: &[String]) -> bool {
    let Some(host) = host else {
        return false;
    };
    let name = name_of(host);
    matches!(name.as_str(), "localhost" | "127.0.0.1" | "[::1]") || allowed.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_their_port_and_case() {
        assert_eq!(name_of("LocalHost:8080"), "localhost");
        assert_eq!(name_of("[::1]:8080"), "[::1]");
        assert_eq!(name_of("[::1]"), "[::1]");
        assert_eq!(name_of("outbox.example.com"), "outbox.example.com");
    }

    #[test]
    fn only_loopback_names_and_listed_ones_are_allowed() {
        let listed = vec!["outbox.example.com".to_owned()];
        for host in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:1",
            "[::1]:8080",
            "outbox.example.com:443",
        ] {
            assert!(allowed(Some(host), &listed), "{host}");
        }
        for host in [
            "evil.example:8080",
            "localhost.evil.example",
            "127.0.0.2",
            "example.com",
        ] {
            assert!(!allowed(Some(host), &listed), "{host}");
        }
        assert!(!allowed(None, &listed));
    }
}
