//! The operators' dashboard (issue 13), served by the daemon itself on its socket under
//! `/ui/`: server-rendered HTML (maud escapes every value it is given), one stylesheet and
//! one small script embedded in the binary, nothing fetched from anywhere else, so it
//! works offline and behind `ssh -L`. Pure rendering only: the handlers that fetch what
//! a page shows live with the socket's other routes (`ingest::socket::routes::ui`).
//!
//! The pages: the overview ([`overview`], with [`chart`]'s charts), the list of writes and
//! one write ([`writes`]), the actions on them ([`actions`]) with their [`csrf`] check,
//! the audit log ([`audit`]) and the login page ([`login`]).

pub mod actions;
pub mod audit;
pub mod chart;
pub mod csrf;
pub mod host;
pub mod login;
pub mod overview;
pub mod writes;

use maud::{DOCTYPE, Markup, PreEscaped, html};

/// The stylesheet, served at `/ui/app.css`.
pub const CSS: &str = include_str!("assets/app.css");

/// The script, served at `/ui/app.js`.
pub const JS: &str = include_str!("assets/app.js");

/// The headers every dashboard answer carries: nothing but the daemon's own script and
/// stylesheet may run or load, the page may not be framed, no referrer leaves it for
/// another origin. (`same-origin`, not `no-referrer`: under `no-referrer` a browser sends
/// `Origin: null` with the dashboard's own forms, and the CSRF check could not tell them
/// from another site's.)
pub const SECURITY_HEADERS: [(&str, &str); 4] = [
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
         img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "same-origin"),
    ("cache-control", "no-store"),
];

/// Who is looking at a page, as far as the page cares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Viewer {
    /// Whether they may change writes: an operator on the socket (`socket.operators`), a
    /// user with the `operator` role on TCP. Others see no action buttons, and their posts
    /// are refused.
    pub may_act: bool,
    /// The token every form of theirs carries (see [`csrf`]).
    pub csrf: String,
    /// Their login name on TCP (the page offers to log out); `None` on the socket.
    pub login: Option<String>,
}

/// The hidden field that carries the viewer's CSRF token in a form.
pub fn csrf_field(viewer: &Viewer) -> Markup {
    html! { input type="hidden" name="csrf" value=(viewer.csrf); }
}

/// A whole page: `title`, the navigation, and `main` (whose element gets `main_id`, for
/// the script to refresh).
pub fn page(title: &str, database: &str, main_id: &str, viewer: &Viewer, main: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · hubspot-outbox" }
                link rel="stylesheet" href="/ui/app.css";
                script src="/ui/app.js" defer {}
            }
            body {
                header {
                    h1 { "hubspot-outbox" }
                    @if main_id != "login" { nav aria-label="Pages" {
                        a href="/ui/" aria-current=[(main_id == "overview").then_some("page")] { "Overview" }
                        a href="/ui/writes" aria-current=[(main_id == "writes").then_some("page")] { "Writes" }
                        a href="/ui/writes?state=failed" { "Failed" }
                        a href="/ui/audit" aria-current=[(main_id == "audit").then_some("page")] { "Audit" }
                    } }
                    @if !database.is_empty() { span { "outbox: " code { (database) } } }
                    @if let Some(name) = &viewer.login {
                        form method="post" action="/ui/logout" class="logout" {
                            (csrf_field(viewer))
                            span { (name) @if !viewer.may_act { " (read-only)" } " " }
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main id=(main_id) aria-live="polite" { (main) }
                footer {
                    @if main_id == "overview" {
                        p id="refreshed" { "Figures as of loading; they refresh every 5 seconds." }
                    }
                    @if main_id == "overview" {
                        p { (PreEscaped("The same figures: <code>hubspot-outbox status</code>, <code>GET /v1/status</code>.")) }
                    }
                }
            }
        }
    }
}
