//! `database.url`: where a PostgreSQL outbox lives (issue 12). It may hold a password, so
//! it is kept in a type that never prints it: logs and `check-config` show
//! [`DatabaseUrl::redacted`].

use std::fmt;

/// A validated `postgres://` (or `postgresql://`) URL.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// Checks the URL's form (the database checks the rest when the daemon connects);
    /// the error never repeats the URL.
    pub fn parse(url: &str) -> Result<Self, String> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(
                "must be a PostgreSQL URL (postgres://user@host:port/database); leave it out \
                 for the SQLite file at database.path"
                    .into(),
            );
        }
        url::Url::parse(url).map_err(|e| format!("is not a usable PostgreSQL URL: {e}"))?;
        Ok(Self(url.to_owned()))
    }

    /// The URL itself, for connecting; never for showing.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `postgres://user@host:port/database`, without password or parameters.
    pub fn redacted(&self) -> String {
        match url::Url::parse(&self.0) {
            Ok(u) => format!(
                "postgres://{}@{}:{}{}",
                u.username(),
                u.host_str().unwrap_or("localhost"),
                u.port().unwrap_or(5432),
                u.path()
            ),
            Err(_) => "postgres://(unreadable)".into(),
        }
    }
}

/// `text` with the password of every URL in it replaced by `[REDACTED]`: for messages
/// that may quote a URL the config holds (a TOML error quotes its line). Everything after
/// the `:` of a URL's user part, up to its last `@`, goes, so a password holding `/`
/// or `@` goes whole; the price is that a URL without a password but with `@` and `:`
/// further on (a port, a parameter) loses a little more than it needs to.
pub fn scrub(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let end = after
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == '`')
            .unwrap_or(after.len());
        let (span, tail) = after.split_at(end);
        match span.rfind('@').map(|a| span.split_at(a)) {
            Some((user, host)) if user.contains(':') => {
                let colon = user.find(':').expect("contains a colon");
                out.push_str(&user[..=colon]);
                out.push_str("[REDACTED]");
                out.push_str(host);
            }
            _ => out.push_str(span),
        }
        rest = tail;
    }
    out.push_str(rest);
    out
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
    fn scrub_takes_every_urls_password_out_of_a_message() {
        assert_eq!(
            scrub("invalid type: string \"postgres://u:s3cret@h:5432/db\", expected a map"),
            "invalid type: string \"postgres://u:[REDACTED]@h:5432/db\", expected a map"
        );
        assert_eq!(
            scrub("url = postgres://u:12/34@h/db\nnext postgres://v:p@q@h/d end"),
            "url = postgres://u:[REDACTED]@h/db\nnext postgres://v:[REDACTED]@h/d end"
        );
        let plain = "postgres://u@h:5432/db and http://x/y: no password";
        assert_eq!(scrub(plain), plain);
    }

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
        let e = DatabaseUrl::parse("postgres://u:s3cret@h:99999/db").unwrap_err();
        assert!(!e.contains("s3cret"), "{e}");
    }
}
