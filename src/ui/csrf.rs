//! Whether a form post to the dashboard may act: it carries the token its page was
//! served with, and the browser does not say it came from another site. Needed on the
//! socket too: behind `ssh -L` the dashboard is an ordinary `http://localhost` origin,
//! and any page the operator's browser has open may post a form to it.

use subtle::ConstantTimeEq;

/// What a post says of itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct Post<'a> {
    /// The form's `csrf` field.
    pub token: Option<&'a str>,
    /// The `Origin` header, when the browser sent one.
    pub origin: Option<&'a str>,
    /// The `Host` header.
    pub host: Option<&'a str>,
    /// The `X-Forwarded-Host` header: the host the browser asked for, as a proxy in front
    /// of the dashboard that rewrote `Host` passes it on.
    pub forwarded_host: Option<&'a str>,
    /// The `Sec-Fetch-Site` header, when the browser sent one.
    pub fetch_site: Option<&'a str>,
}

impl<'a> Post<'a> {
    /// What a request's headers say, with the form's `token`.
    pub fn from_headers(headers: &'a axum::http::HeaderMap, token: Option<&'a str>) -> Self {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        Self {
            token,
            origin: text("origin"),
            host: text("host"),
            forwarded_host: text("x-forwarded-host"),
            fetch_site: text("sec-fetch-site"),
        }
    }
}

/// `Ok` when `post` carries `expected` and nothing says it came from elsewhere; else why
/// it is refused. The token is compared in constant time. `Sec-Fetch-Site` must be
/// `same-origin` (or `none`: typed by the user) when present: `same-site` is refused too,
/// because another port on `localhost` is the same site. An `Origin` must name the host
/// the request was sent to (`Host`, or `X-Forwarded-Host` behind a proxy).
pub fn check(expected: &str, post: &Post<'_>) -> Result<(), &'static str> {
    same_origin(post)?;
    match post.token {
        Some(t) if !expected.is_empty() && bool::from(t.as_bytes().ct_eq(expected.as_bytes())) => {
            Ok(())
        }
        Some(_) => Err("the form's token is wrong or expired; reload the page and try again"),
        None => Err("the form carries no token; reload the page and try again"),
    }
}

/// The origin half of [`check`], alone: what the login form (which has no session yet,
/// so no token) must pass.
pub fn same_origin(post: &Post<'_>) -> Result<(), &'static str> {
    if let Some(site) = post.fetch_site
        && !matches!(site, "same-origin" | "none")
    {
        return Err("the browser says this form was sent from another site");
    }
    if let Some(origin) = post.origin {
        let origin_host = origin.split_once("://").map_or(origin, |(_, h)| h);
        if origin == "null"
            || (Some(origin_host) != post.host && Some(origin_host) != post.forwarded_host)
        {
            return Err("the form was sent from another origin than the dashboard's");
        }
    }
    Ok(())
}

/// A new random token (256 bits, hex): a session's, or the socket's for this daemon's
/// life.
pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post<'a>(token: Option<&'a str>) -> Post<'a> {
        Post {
            token,
            host: Some("localhost:8080"),
            ..Post::default()
        }
    }

    #[test]
    fn only_the_right_token_from_the_same_origin_passes() {
        assert!(check("abc", &post(Some("abc"))).is_ok());
        assert!(check("abc", &post(Some("abd"))).is_err());
        assert!(check("abc", &post(None)).is_err());
        assert!(
            check("", &post(Some(""))).is_err(),
            "no token is never a token"
        );
        let same = Post {
            origin: Some("http://localhost:8080"),
            fetch_site: Some("same-origin"),
            ..post(Some("abc"))
        };
        assert!(check("abc", &same).is_ok());
        let proxied = Post {
            origin: Some("https://outbox.example.com"),
            forwarded_host: Some("outbox.example.com"),
            ..post(Some("abc"))
        };
        assert!(
            check("abc", &proxied).is_ok(),
            "behind a proxy that rewrote Host"
        );
        for (origin, site) in [
            (Some("http://localhost:9999"), None),
            (Some("null"), None),
            (None, Some("same-site")),
            (None, Some("cross-site")),
        ] {
            let p = Post {
                origin,
                fetch_site: site,
                ..post(Some("abc"))
            };
            assert!(check("abc", &p).is_err(), "{origin:?} {site:?}");
        }
    }

    #[test]
    fn tokens_are_new_each_time() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
