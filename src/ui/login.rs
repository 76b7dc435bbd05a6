//! The login page of the dashboard on TCP (`ui.listen`).

use maud::{Markup, html};

/// The login form; `error` says why the last attempt was refused.
pub fn login(error: Option<&str>) -> Markup {
    html! {
        h2 { "Log in" }
        @if let Some(e) = error { p role="alert" class="attention" { (e) } }
        form method="post" action="/ui/login" class="login" {
            label for="user" { "User" }
            input id="user" name="user" autocomplete="username" required;
            label for="password" { "Password" }
            input id="password" name="password" type="password" autocomplete="current-password" required;
            button type="submit" { "Log in" }
        }
    }
}
