//! The config's loading, defaults and validation, from TOML and environment pairs.

use std::path::Path;

use super::*;

fn load_toml(toml: &str, env: &MapEnv) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, toml).unwrap();
    Config::load(Some(&file), env)
}

#[test]
fn no_file_gives_documented_defaults() {
    let c = Config::load(None, &MapEnv::new(&[("HOME", "/home/u")])).unwrap();
    assert_eq!(
        c.database.path,
        Path::new("/home/u/.local/state/hubspot-outbox/outbox.db")
    );
    assert_eq!(
        c.socket.path,
        Path::new("/home/u/.local/state/hubspot-outbox/outbox.sock")
    );
    assert_eq!(c.socket.mode, 0o660);
    assert_eq!(c.database.poll_interval, Duration::from_millis(250));
    assert_eq!(c.limits.max_request_bytes, 16 * 1024 * 1024);
    assert_eq!(c.limits.max_writes_per_request, 10_000);
    assert!(c.access_token.is_none());
}

#[test]
fn the_shipped_example_config_is_valid_and_says_the_defaults() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/hubspot-outbox.toml");
    let env = MapEnv::new(&[("HOME", "/home/u")]);
    let example = Config::load(Some(&file), &env).unwrap();
    let defaults = Config::load(None, &env).unwrap();
    assert_eq!(format!("{example:?}"), format!("{defaults:?}"));
}

#[test]
fn dispatch_settings_have_hubspots_defaults_and_are_checked() {
    let env = MapEnv::new(&[("HOME", "/h")]);
    let c = Config::load(None, &env).unwrap();
    assert_eq!(
        c.hubspot.batch_create_url("contacts"),
        "https://api.hubapi.com/crm/v3/objects/contacts/batch/create"
    );
    assert_eq!(
        (c.rate_limit.requests_per_interval, c.rate_limit.daily_limit),
        (100, 250_000)
    );
    assert_eq!(c.batching.max_size, 100);
    assert_eq!(c.retry.on_ambiguous, OnAmbiguous::Hold);
    assert_eq!(c.policy("contacts").unique_property, None);

    let c = load_toml(
        "[hubspot]\nbase_url = \"http://127.0.0.1:9/\"\napi_version = \"2026-03\"\n\
         [objects.contacts]\nunique_property = \"email\"\n[objects.deals]\n",
        &env,
    )
    .unwrap();
    assert_eq!(
        c.hubspot.batch_create_url("deals"),
        "http://127.0.0.1:9/crm/objects/2026-03/deals/batch/create"
    );
    let contacts = c.policy("contacts");
    assert_eq!(contacts.unique_property.as_deref(), Some("email"));
    assert_eq!(
        contacts.on_conflict,
        OnConflict::Adopt,
        "adopt is the default with a unique property"
    );
    assert_eq!(c.policy("deals").on_conflict, OnConflict::Fail);

    for (toml, key) in [
        ("[batching]\nmax_size = 101\n", "batching.max_size"),
        (
            "[rate_limit]\ntimezone = \"Mars/Olympus\"\n",
            "rate_limit.timezone",
        ),
        ("[hubspot]\napi_version = \"v4\"\n", "hubspot.api_version"),
        ("[hubspot]\nbase_url = \"ftp://x\"\n", "hubspot.base_url"),
        ("[retry]\non_ambiguous = \"maybe\"\n", "on_ambiguous"),
        (
            "[retry]\ninitial_backoff = \"1h\"\n",
            "retry.initial_backoff",
        ),
        (
            "[objects.Contacts]\nunique_property = \"email\"\n",
            "objects",
        ),
        ("[objects.contacts]\nunique = \"email\"\n", "unique"),
    ] {
        let e = load_toml(toml, &env).unwrap_err().to_string();
        assert!(e.contains(key), "{toml}: {e}");
    }
}

#[test]
fn systemd_directories_are_preferred() {
    let env = MapEnv::new(&[
        ("HOME", "/home/u"),
        ("STATE_DIRECTORY", "/var/lib/hubspot-outbox"),
        ("RUNTIME_DIRECTORY", "/run/hubspot-outbox"),
    ]);
    let c = Config::load(None, &env).unwrap();
    assert_eq!(
        c.database.path,
        Path::new("/var/lib/hubspot-outbox/outbox.db")
    );
    assert_eq!(c.socket.path, Path::new("/run/hubspot-outbox/outbox.sock"));
}

#[test]
fn environment_overrides_the_file() {
    let env = MapEnv::new(&[
        ("HOME", "/h"),
        ("HUBSPOT_OUTBOX__DATABASE__PATH", "/env/db.sqlite"),
        ("HUBSPOT_OUTBOX__LIMITS__MAX_WRITES_PER_REQUEST", "7"),
        ("HUBSPOT_OUTBOX__SOCKET__MODE", "0600"),
    ]);
    let c = load_toml(
        "[database]\npath = \"/file/db\"\n[socket]\nmode = \"0666\"\n",
        &env,
    )
    .unwrap();
    assert_eq!(c.database.path, Path::new("/env/db.sqlite"));
    assert_eq!(c.limits.max_writes_per_request, 7);
    assert_eq!(c.socket.mode, 0o600);
}

#[test]
fn toml_octal_integer_mode_is_understood() {
    let c = load_toml("[socket]\nmode = 0o640\n", &MapEnv::new(&[("HOME", "/h")])).unwrap();
    assert_eq!(c.socket.mode, 0o640);
}

#[test]
fn unknown_keys_and_bad_values_name_the_key() {
    let env = MapEnv::new(&[("HOME", "/h")]);
    let e = load_toml("[database]\npaht = \"x\"\n", &env)
        .unwrap_err()
        .to_string();
    assert!(e.contains("paht"), "{e}");
    let e = load_toml("[limits]\nmax_request_bytes = \"lots\"\n", &env)
        .unwrap_err()
        .to_string();
    assert!(e.contains("max_request_bytes"), "{e}");
    let e = load_toml("[socket]\nmode = \"rw\"\n", &env)
        .unwrap_err()
        .to_string();
    assert!(e.contains("mode"), "{e}");
    let e = load_toml("[database]\npoll_interval = \"0s\"\n", &env)
        .unwrap_err()
        .to_string();
    assert!(e.contains("database.poll_interval"), "{e}");
    let e = load_toml("[nonsense]\nx = 1\n", &env)
        .unwrap_err()
        .to_string();
    assert!(e.contains("nonsense"), "{e}");
    let env = MapEnv::new(&[("HOME", "/h"), ("HUBSPOT_OUTBOX__SOCKET__MODDE", "1")]);
    let e = Config::load(None, &env).unwrap_err().to_string();
    assert!(e.contains("modde"), "{e}");
}

#[test]
fn socket_limits_have_defaults_and_refuse_nonsense() {
    let env = MapEnv::new(&[("HOME", "/h")]);
    let c = load_toml("", &env).unwrap();
    assert_eq!(c.socket.max_connections, 256);
    assert_eq!(c.socket.idle_timeout, Duration::from_secs(60));
    assert_eq!(c.limits.max_buffered_bytes, 64 * 1024 * 1024);
    for (toml, key) in [
        ("[socket]\nmax_connections = 0\n", "socket.max_connections"),
        (
            "[socket]\nheader_timeout = \"0s\"\n",
            "socket.header_timeout",
        ),
        ("[socket]\nbody_timeout = \"0s\"\n", "socket.body_timeout"),
        (
            "[limits]\nmax_request_bytes = 2048\nmax_buffered_bytes = 1024\n",
            "limits.max_buffered_bytes",
        ),
    ] {
        let e = load_toml(toml, &env).unwrap_err().to_string();
        assert!(e.contains(key), "{toml}: {e}");
    }
}

#[test]
fn token_comes_from_env_or_file_and_never_prints() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "pat-na1-secret\n").unwrap();
    let toml = format!(
        "[hubspot]\naccess_token_file = {:?}\n",
        token_file.display().to_string()
    );
    let c = load_toml(&toml, &MapEnv::new(&[("HOME", "/h")])).unwrap();
    let token = c.access_token.clone().unwrap();
    assert_eq!(token.expose(), "pat-na1-secret");
    assert!(!format!("{c:?}").contains("secret"));
    assert_eq!(format!("{token}"), "[REDACTED]");
    assert_eq!(format!("{token:?}"), "AccessToken([REDACTED])");

    let env = MapEnv::new(&[("HOME", "/h"), (TOKEN_ENV, "from-env")]);
    let c = load_toml(&toml, &env).unwrap();
    assert_eq!(c.access_token.unwrap().expose(), "from-env");

    let creds = tempfile::tempdir().unwrap();
    std::fs::write(creds.path().join(TOKEN_CREDENTIAL), " from-credential \n").unwrap();
    let env = MapEnv::new(&[
        ("HOME", "/h"),
        ("CREDENTIALS_DIRECTORY", creds.path().to_str().unwrap()),
    ]);
    let c = Config::load(None, &env).unwrap();
    assert_eq!(c.access_token.unwrap().expose(), "from-credential");

    let toml = "[hubspot]\naccess_token_file = \"/does/not/exist\"\n";
    let e = load_toml(toml, &MapEnv::new(&[("HOME", "/h")]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("hubspot.access_token_file"), "{e}");
}

#[test]
fn purged_trace_ids_are_remembered_at_least_as_long_as_writes_are_kept() {
    let err = Config::load(
        None,
        &MapEnv::new(&[
            ("HOME", "/home/x"),
            ("HUBSPOT_OUTBOX__RETENTION__TRACE_IDS", "7d"),
        ]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("retention.trace_ids") && err.contains("retention.succeeded"),
        "{err}"
    );
    let c = Config::load(
        None,
        &MapEnv::new(&[
            ("HOME", "/home/x"),
            ("HUBSPOT_OUTBOX__RETENTION__TRACE_IDS", "7d"),
            ("HUBSPOT_OUTBOX__RETENTION__SUCCEEDED", "7d"),
            ("HUBSPOT_OUTBOX__RETENTION__DISCARDED", "0s"),
        ]),
    )
    .unwrap();
    assert_eq!(
        c.retention.trace_ids,
        std::time::Duration::from_secs(7 * 86400)
    );
    // "0s" remembers them for ever, which outlasts any retention.
    let env = MapEnv::new(&[
        ("HOME", "/home/x"),
        ("HUBSPOT_OUTBOX__RETENTION__TRACE_IDS", "0s"),
    ]);
    assert!(Config::load(None, &env).is_ok());
}

#[test]
fn allowed_hosts_are_names_without_ports() {
    let env = MapEnv::new(&[("HOME", "/h")]);
    let c = load_toml(
        "[ui]\nallowed_hosts = [\"Outbox.Example.com\", \"[fd00::1]\"]\n",
        &env,
    )
    .unwrap();
    assert_eq!(c.ui.allowed_hosts, ["outbox.example.com", "[fd00::1]"]);
    for bad in [
        "outbox.example.com:443",
        "",
        "http://x",
        "*.example.com",
        "[fd00::1",
    ] {
        let e = load_toml(&format!("[ui]\nallowed_hosts = [\"{bad}\"]\n"), &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("ui.allowed_hosts"), "{bad}: {e}");
    }
}
