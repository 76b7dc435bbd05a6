//! `[ui]`: the dashboard. On the socket it needs nothing; on TCP (`ui.listen`, off by
//! default) every request needs a login, checked against a users file. Loading the config
//! only finds the file; the daemon reads it when it starts, and `check-config` checks it
//! (other commands never read it: an operator running `status` need not be able to).
//!
//! The users file (`ui.users_file`, or the systemd credential `ui-users` in
//! `$CREDENTIALS_DIRECTORY`): one user a line, `NAME:ROLE:PASSWORD`, `ROLE` being
//! `operator` (may retry, discard, edit) or `read-only`, `PASSWORD` an Argon2 hash from
//! `hubspot-outbox hash-password` or the password itself (see [`super::password`]); blank
//! lines and `#` comments skipped. It holds secrets, so it must not be readable by every user (mode `o-rwx`),
//! and the config file itself never holds a password.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::env::Env;
use super::password::Secret;
use super::{ConfigError, invalid};

/// The systemd credential holding the users file (`LoadCredential=ui-users:...`).
pub const USERS_CREDENTIAL: &str = "ui-users";

/// `[ui]` as the file says it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawUi {
    pub listen: Option<SocketAddr>,
    pub users_file: Option<PathBuf>,
    pub secure_cookie: bool,
    #[serde(with = "humantime_serde")]
    pub session_timeout: Duration,
    pub portal_id: Option<u64>,
    pub app_url: String,
    pub allowed_hosts: Vec<String>,
}

impl Default for RawUi {
    fn default() -> Self {
        Self {
            listen: None,
            users_file: None,
            secure_cookie: false,
            session_timeout: Duration::from_secs(8 * 3600),
            portal_id: None,
            app_url: "https://app.hubspot.com".into(),
            allowed_hosts: Vec::new(),
        }
    }
}

/// The dashboard's settings.
#[derive(Debug, Clone, Default)]
pub struct UiConfig {
    /// Where the dashboard is served over TCP, with a login; `None`: only on the socket.
    pub listen: Option<SocketAddr>,
    /// Who may log in on TCP: the users file (`None` when `listen` is not set); see
    /// [`UiConfig::load_users`].
    pub users_file: Option<PathBuf>,
    /// Mark the session cookie `Secure` (the dashboard is reached over HTTPS, through a
    /// proxy that ends TLS).
    pub secure_cookie: bool,
    /// A session ends this long after its last request.
    pub session_timeout: Duration,
    /// The HubSpot portal (hub) id, to link a write to its record in HubSpot's app.
    pub portal_id: Option<u64>,
    /// HubSpot's app, for those links (`https://app-eu1.hubspot.com` for an EU portal).
    pub app_url: String,
    /// Host names, besides `localhost`, `127.0.0.1` and `[::1]`, that a browser may
    /// address the socket by (a proxy in front of it that passes its own name as `Host`);
    /// lowercased, without a port. See `crate::ui::host`.
    pub allowed_hosts: Vec<String>,
}

/// One dashboard login.
#[derive(Clone, PartialEq, Eq)]
pub struct UiUser {
    pub name: String,
    /// May change writes (`operator`); else only look (`read-only`).
    pub operator: bool,
    secret: Secret,
}

impl UiUser {
    /// Whether `password` is this user's (an Argon2 check takes tens of milliseconds of
    /// CPU: call it off the async threads).
    pub fn password_is(&self, password: &str) -> bool {
        self.secret.matches(password)
    }

    /// Whether the users file holds this user's password hashed.
    pub fn is_hashed(&self) -> bool {
        matches!(self.secret, Secret::Argon2(_))
    }

    /// A user nobody logs in as, whose password is checked when the name typed is
    /// nobody's (hashed, with a new random password, when `hashed`).
    pub fn stand_in(hashed: bool) -> Self {
        let bytes: [u8; 32] = rand::random();
        let password: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let secret = match hashed {
            true => crate::config::password::hash_password(&password)
                .map(Secret::Argon2)
                .unwrap_or(Secret::Plain(password)),
            false => Secret::Plain(password),
        };
        Self {
            name: String::new(),
            operator: false,
            secret,
        }
    }
}

impl fmt::Debug for UiUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UiUser")
            .field("name", &self.name)
            .field("operator", &self.operator)
            .field("password", &"[REDACTED]")
            .finish()
    }
}

impl UiConfig {
    /// Reads and checks the users file (when `listen` is set; else there is none).
    pub fn load_users(&self) -> Result<Vec<UiUser>, ConfigError> {
        match &self.users_file {
            Some(file) => read_users(file),
            None => Ok(Vec::new()),
        }
    }
}

/// Checks `[ui]`; finds the users file when `listen` is set.
pub fn ui(raw: RawUi, env: &dyn Env) -> Result<UiConfig, ConfigError> {
    let app_url = raw.app_url.trim_end_matches('/').to_owned();
    if !(app_url.starts_with("https://") || app_url.starts_with("http://")) {
        return Err(invalid(
            "ui.app_url",
            format!("`{app_url}` is not an http(s) address"),
        ));
    }
    if raw.session_timeout.is_zero() {
        return Err(invalid("ui.session_timeout", "must not be 0".to_owned()));
    }
    let users_file = match raw.listen {
        None => None,
        Some(_) => {
            let credential = env
                .var("CREDENTIALS_DIRECTORY")
                .map(|dir| PathBuf::from(dir).join(USERS_CREDENTIAL))
                .filter(|p| p.exists());
            let Some(file) = raw.users_file.clone().or(credential) else {
                return Err(invalid(
                    "ui.users_file",
                    "ui.listen serves the dashboard over TCP, which needs logins: name a users \
                     file (NAME:ROLE:PASSWORD lines) or pass the systemd credential `ui-users`"
                        .to_owned(),
                ));
            };
            Some(file)
        }
    };
    let mut allowed_hosts = Vec::new();
    for host in raw.allowed_hosts {
        let name = host.trim().to_ascii_lowercase();
        let with_port = match name.strip_prefix('[') {
            Some(v6) => !v6.ends_with(']'),
            None => name.contains(':'),
        };
        if name.is_empty() || name.contains(['/', '@', ' ', '*']) || with_port {
            return Err(invalid(
                "ui.allowed_hosts",
                format!("`{host}` is not a host name without a port (such as outbox.example.com)"),
            ));
        }
        allowed_hosts.push(name);
    }
    Ok(UiConfig {
        listen: raw.listen,
        allowed_hosts,
        users_file,
        secure_cookie: raw.secure_cookie,
        session_timeout: raw.session_timeout,
        portal_id: raw.portal_id,
        app_url,
    })
}

fn read_users(file: &Path) -> Result<Vec<UiUser>, ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let bad = |why: String| invalid("ui.users_file", format!("`{}`: {why}", file.display()));
    let meta = std::fs::metadata(file).map_err(|e| bad(format!("cannot read it: {e}")))?;
    if meta.permissions().mode() & 0o007 != 0 {
        return Err(bad(
            "every user may read or change it; it holds passwords (chmod o-rwx)".to_owned(),
        ));
    }
    let text = std::fs::read_to_string(file).map_err(|e| bad(format!("cannot read it: {e}")))?;
    parse_users(&text).map_err(bad)
}

/// The users file's lines; the error names the line (never its password).
pub fn parse_users(text: &str) -> Result<Vec<UiUser>, String> {
    let mut users: Vec<UiUser> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let n = i + 1;
        let mut parts = line.splitn(3, ':');
        let (Some(name), Some(role), Some(password)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("line {n} is not NAME:ROLE:PASSWORD"));
        };
        let operator = match role {
            "operator" => true,
            "read-only" => false,
            // The field is not quoted: on a line written PASSWORD where ROLE belongs, it
            // would print the password.
            _ => {
                return Err(format!(
                    "line {n}: the role (the second field) is neither operator nor read-only"
                ));
            }
        };
        if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
            return Err(format!(
                "line {n}: the name must be 1 to 64 printable characters"
            ));
        }
        let secret = Secret::parse(password).map_err(|why| format!("line {n}: {name}: {why}"))?;
        if users.iter().any(|u| u.name == name) {
            return Err(format!("line {n}: {name} is listed twice"));
        }
        users.push(UiUser {
            name: name.to_owned(),
            operator,
            secret,
        });
    }
    if users.is_empty() {
        return Err("it lists no user".to_owned());
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_file_is_read_or_refused_without_quoting_passwords() {
        let users = parse_users(
            "# who may log in\nada:operator:correct horse battery\n\nbob:read-only:another long secret\n",
        )
        .unwrap();
        assert_eq!(users.len(), 2);
        assert!(users[0].operator && !users[1].operator);
        assert!(users[0].password_is("correct horse battery"));
        assert!(!users[0].password_is("correct horse"));
        assert!(
            !format!("{users:?}").contains("horse"),
            "Debug never prints a password"
        );
        for (text, why) in [
            ("ada:operator", "line 1 is not NAME:ROLE:PASSWORD"),
            (
                "ada:admin:correct horse battery",
                "the role (the second field)",
            ),
            (
                "ada:correct horse battery:operator",
                "the role (the second field)",
            ),
            ("ada:operator:short", "shorter than 12"),
            (
                "a:operator:correct horse battery\na:read-only:correct horse battery",
                "twice",
            ),
            ("# nobody", "no user"),
        ] {
            let e = parse_users(text).unwrap_err();
            assert!(e.contains(why), "{text}: {e}");
            assert!(!e.contains("horse"), "{e}");
        }
    }
}
