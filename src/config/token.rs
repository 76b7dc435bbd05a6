//! The HubSpot access token: a type that never prints, and the places it is read from
//! (environment, file, systemd credential).

use std::fmt;
use std::path::{Path, PathBuf};

use super::env::Env;
use super::{ConfigError, invalid};

/// The environment variable that carries the HubSpot access token.
pub const TOKEN_ENV: &str = "HUBSPOT_ACCESS_TOKEN";

/// The HubSpot private-app access token. Its `Debug` and `Display` print `[REDACTED]`,
/// so it cannot reach a log line or an error message by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(String);

impl AccessToken {
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token itself, for the `Authorization` header and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken([REDACTED])")
    }
}

impl fmt::Display for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// The systemd credential holding the token (`LoadCredential=hubspot-access-token:...`).
pub const TOKEN_CREDENTIAL: &str = "hubspot-access-token";

/// `HUBSPOT_ACCESS_TOKEN` wins; then `hubspot.access_token_file`; then the systemd
/// credential `$CREDENTIALS_DIRECTORY/hubspot-access-token`; each trimmed. A file that is
/// named but unreadable or empty is an error, not a silent "no token".
pub fn load_token(file: Option<&Path>, env: &dyn Env) -> Result<Option<AccessToken>, ConfigError> {
    if let Some(token) = env.var(TOKEN_ENV) {
        return Ok(Some(AccessToken::new(token.trim())));
    }
    let credential = env
        .var("CREDENTIALS_DIRECTORY")
        .map(|dir| PathBuf::from(dir).join(TOKEN_CREDENTIAL))
        .filter(|p| p.exists());
    let Some(file) = file.map(Path::to_path_buf).or(credential) else {
        return Ok(None);
    };
    let file = file.as_path();
    let text = std::fs::read_to_string(file).map_err(|e| {
        invalid(
            "hubspot.access_token_file",
            format!("cannot read `{}`: {e}", file.display()),
        )
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(invalid(
            "hubspot.access_token_file",
            format!("`{}` is empty", file.display()),
        ));
    }
    Ok(Some(AccessToken::new(token)))
}
