//! The audit log's page: every retry, discard and edit, newest first, a page at a time by
//! key, whoever made it and through whatever (command line, socket, dashboard).

use maud::{Markup, html};

use crate::store::audit::AuditLine;

/// Lines per page.
pub const PAGE: i64 = 50;

/// The audit page's content.
pub fn audit(lines: &[AuditLine]) -> Markup {
    html! {
        h2 { "Audit log" }
        p { "Every change made to writes, by whom and through what: the command line, the socket's API, or this dashboard. Dry runs change nothing and are not listed." }
        @if lines.is_empty() {
            p { "Nothing has been changed yet." }
        } @else {
            div class="wide" {
                table {
                    caption { "Newest first" }
                    thead { tr {
                        th scope="col" { "when (UTC)" } th scope="col" { "who" } th scope="col" { "through" }
                        th scope="col" { "action" } th scope="col" { "writes" } th scope="col" { "which" }
                        th scope="col" { "what changed" }
                    } }
                    tbody {
                        @for l in lines {
                            tr {
                                td { (l.at) }
                                td { (l.who) }
                                td { (l.via) }
                                td { (l.action) }
                                td class="n" { (l.writes) }
                                td { code { (l.target) } }
                                td { (l.detail.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
            @if lines.len() as i64 == PAGE {
                @if let Some(last) = lines.last() {
                    p { a href=(format!("/ui/audit?before={}", last.id)) rel="next" { "Older →" } }
                }
            }
        }
    }
}
