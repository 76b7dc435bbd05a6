//! `database.url`: where a PostgreSQL outbox lives (issue 12). It may hold a password, so
//! it is kept in a type that never prints it: logs and `check-config` show
//! [`DatabaseUrl::redacted`].

use std::fmt;
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;

/// A validated `postgres://` (or `postgresql://`) URL.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// Checks the URL the way the daemon will use it; the error never repeats the URL.
    pub fn parse(url: &str) -> Result<Self, String> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(
                "must be a PostgreSQL URL (postgres://user@host:port/database); leave it out \
                 for the SQLite file at database.path"
                    .into(),
            );
        }
        PgConnectOptions::from_str(url)
            .map_err(|e| format!("is not a usable PostgreSQL URL: {}", redact_error(&e)))?;
        Ok(Self(url.to_owned()))
    }

    /// The URL itself, for connecting; never for showing.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `postgres://user@host:port/database`, without password or parameters.
    pub fn redacted(&self) -> String {
        match PgConnectOptions::from_str(&self.0) {
            Ok(o) => format!(
                "postgres://{}@{}:{}/{}",
                o.get_username(),
                o.get_host(),
                o.get_port(),
                o.get_database().unwrap_or_default()
            ),
            Err(_) => "postgres://(unreadable)".into(),
        }
    }
}

/// sqlx's parse errors may quote the input; only their kind is kept.
fn redact_error(e: &sqlx::Error) -> &'static str {
    match e {
        sqlx::Error::Configuration(_) => "its form or one of its parameters is not understood",
        _ => "it cannot be read",
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_never_shows() {
        let url = DatabaseUrl::parse("postgres://outbox:s3cret@db.example:5433/crm").unwrap();
        assert_eq!(url.redacted(), "postgres://outbox@db.example:5433/crm");
        assert!(!format!("{url:?}").contains("s3cret"));
        assert_eq!(url.expose(), "postgres://outbox:s3cret@db.example:5433/crm");
    }

    #[test]
    fn other_urls_are_refused_without_repeating_them() {
        let e = DatabaseUrl::parse("mysql://u:s3cret@h/db").unwrap_err();
        assert!(
            e.contains("must be a PostgreSQL URL") && !e.contains("s3cret"),
            "{e}"
        );
        let e = DatabaseUrl::parse("postgres://u:s3cret@h:notaport/db").unwrap_err();
        assert!(!e.contains("s3cret"), "{e}");
    }
}
