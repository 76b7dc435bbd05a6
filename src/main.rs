//! Parse the command line, load the config, start tracing, run, choose the exit code.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use tokio::io::BufReader;
use tokio_util::sync::CancellationToken;

use hubspot_outbox::app;
use hubspot_outbox::config::{Config, LogFormat, ProcessEnv};
use hubspot_outbox::operator;
use hubspot_outbox::operator::enqueue::{Summary, enqueue};
use hubspot_outbox::simulator::{SimFaults, SimOptions};

mod cli;

use cli::{Cli, Command, SimulateArgs};

/// mimalloc: ingest allocates and frees many small strings per write; with glibc's malloc
/// about 15% of the bulk path went to the allocator's own bookkeeping (measured with perf).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hubspot-outbox: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(real_main(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hubspot-outbox: {e:#}");
            // Usage errors exit 2, like clap's own; everything else 1.
            match e.downcast_ref::<operator::OpsError>() {
                Some(operator::OpsError::Usage(_)) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

async fn real_main(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Simulate(args) = cli.command {
        return simulate(args).await;
    }
    if let Command::HashPassword = cli.command {
        return hash_password();
    }
    let config = Config::load(cli.config.as_deref(), &ProcessEnv)?;
    init_tracing(&config);
    match cli.command {
        Command::Run => {
            let shutdown = CancellationToken::new();
            tokio::spawn(watch_signals(shutdown.clone()));
            app::run(config, shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Enqueue { file, chunk_size } => {
            run_enqueue(&config, file.as_deref(), chunk_size).await
        }
        Command::Simulate(_) | Command::HashPassword => unreachable!("handled above"),
        Command::Status { json } => print(operator::status(&config, json).await?),
        Command::Failed { filter, json } => {
            print(operator::failed(&config, &filter.into(), json).await?)
        }
        Command::Show { trace_id, json } => print(operator::show(&config, &trace_id, json).await?),
        Command::Retry {
            select,
            edit: Some(trace_id),
            set,
            unset,
            set_id,
        } => print(
            operator::edit(
                &config,
                &trace_id,
                &operator::Edit {
                    sets: &set,
                    unsets: &unset,
                    record_key: set_id.as_deref(),
                },
                select.json,
            )
            .await?,
        ),
        Command::Retry { select, .. } => {
            print(operator::change(&config, &select.into(), false).await?)
        }
        Command::Discard { select } => {
            print(operator::change(&config, &select.into(), true).await?)
        }
        Command::Purge {
            succeeded_older_than,
            discarded_older_than,
            dry_run,
            json,
        } => print(
            operator::purge(
                &config,
                succeeded_older_than,
                discarded_older_than,
                dry_run,
                json,
            )
            .await?,
        ),
        Command::Migrate { json } => {
            let store = operator::open_creating(&config).await?;
            store.close().await;
            let path = config.database.name();
            print(vec![if json {
                serde_json::json!({"database": path, "upToDate": true}).to_string()
            } else {
                format!("database `{path}` is up to date")
            }])
        }
        Command::Setup {
            object_types,
            dry_run,
            json,
        } => {
            let store = operator::open_creating(&config).await?;
            let report =
                operator::setup(&config, store.clone(), &object_types, dry_run, json).await;
            store.close().await;
            let report = report?;
            print(report.lines)?;
            Ok(if report.all_ready || dry_run {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Export { file, json } => {
            let summary = operator::transfer::export_command(&config, &file, json).await?;
            // The export itself may be on stdout: the summary goes beside it.
            if file.as_os_str() == "-" {
                eprintln!("{summary}");
                Ok(ExitCode::SUCCESS)
            } else {
                print(vec![summary])
            }
        }
        Command::Import { file, json } => print(vec![
            operator::transfer::import_command(&config, &file, json).await?,
        ]),
        Command::CheckConfig { json } => print(operator::check_config(&config, json)?),
    }
}

/// `hash-password`: the first line of standard input (without its line end), hashed.
fn hash_password() -> anyhow::Result<ExitCode> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    let hash = hubspot_outbox::config::password::hash_password(password)
        .map_err(operator::OpsError::Usage)?;
    print(vec![hash])
}

/// Prints a command's output lines to stdout.
fn print(lines: Vec<String>) -> anyhow::Result<ExitCode> {
    for line in lines {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn simulate(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    for (name, share) in [
        ("--fail-rate", args.fail_rate),
        ("--fail-after-create-rate", args.fail_after_create_rate),
        ("--hang-after-create-rate", args.hang_after_create_rate),
        ("--close-after-create-rate", args.close_after_create_rate),
    ] {
        anyhow::ensure!(
            (0.0..=1.0).contains(&share),
            "{name} must be between 0 and 1"
        );
    }
    anyhow::ensure!(
        args.requests_per_interval > 0,
        "--requests-per-interval must be at least 1"
    );
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr()?;
    // The simulator's token is a test value the user chose, not a HubSpot secret.
    println!(
        "HubSpot simulator on http://{address} (token {:?}, {} requests per {:?}); \
         set hubspot.base_url = \"http://{address}\"",
        args.token, args.requests_per_interval, args.interval
    );
    let options = SimOptions {
        token: args.token,
        requests_per_interval: args.requests_per_interval,
        interval: args.interval,
        daily_limit: args.daily_limit,
        echo_trace_ids: !args.no_echo_trace_ids,
        rate_headers: true,
        faults: SimFaults {
            fail_rate: args.fail_rate,
            fail_after_create_rate: args.fail_after_create_rate,
            hang_after_create_rate: args.hang_after_create_rate,
            close_after_create_rate: args.close_after_create_rate,
            latency: args.latency,
            ..SimFaults::default()
        },
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(watch_signals(shutdown.clone()));
    hubspot_outbox::simulator::serve(listener, options, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// Logs go to stderr. Under systemd (`JOURNAL_STREAM` set) there are no colours and no
/// timestamps, since journald adds its own.
fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.level));
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let ansi = !under_journald && std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match (config.log.format, under_journald) {
        (LogFormat::Json, _) => builder.json().init(),
        (LogFormat::Text, true) => builder.without_time().init(),
        (LogFormat::Text, false) => builder.init(),
    }
}

/// The first SIGTERM or SIGINT starts a clean shutdown; a second one exits at once.
async fn watch_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the daemon with SIGKILL");
        return;
    };
    // SIGHUP's default would kill the daemon; it reloads nothing, so say so and go on.
    if let Ok(mut hup) = signal(SignalKind::hangup()) {
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                tracing::warn!(
                    "SIGHUP ignored: nothing is reloaded in place; restart the daemon to apply a new config"
                );
            }
        });
    }
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    tracing::info!("shutting down: no new requests; finishing those in progress");
    shutdown.cancel();
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    tracing::warn!("second signal: exiting now; the next start recovers");
    std::process::exit(130);
}

async fn run_enqueue(
    config: &Config,
    file: Option<&Path>,
    chunk_size: usize,
) -> anyhow::Result<ExitCode> {
    let start = Instant::now();
    let mut last = Instant::now();
    let show = std::io::stderr().is_terminal();
    let progress = |s: &Summary| {
        if last.elapsed() >= Duration::from_secs(1) {
            last = Instant::now();
            let rate = s.queued as f64 / start.elapsed().as_secs_f64();
            let text = format!(
                "enqueue: {} lines read, {} queued, {} duplicates, {} rejected ({rate:.0} writes/s)",
                s.lines_read,
                s.queued,
                s.duplicates,
                s.rejected.len()
            );
            if show {
                eprint!("\r{text}");
            } else {
                eprintln!("{text}");
            }
        }
    };
    let socket = &config.socket.path;
    let result = match file.filter(|f| *f != Path::new("-")) {
        Some(path) => {
            let f = tokio::fs::File::open(path)
                .await
                .with_context(|| format!("cannot open `{}`", path.display()))?;
            enqueue(
                socket,
                BufReader::with_capacity(1 << 20, f),
                chunk_size,
                progress,
            )
            .await
        }
        None => {
            enqueue(
                socket,
                BufReader::new(tokio::io::stdin()),
                chunk_size,
                progress,
            )
            .await
        }
    };
    if show && start.elapsed() >= Duration::from_secs(1) {
        eprintln!();
    }
    let (summary, failure) = match result {
        Ok(s) => (s, None),
        Err((s, e)) => (s, Some(e)),
    };
    print_summary(&summary);
    if let Some(e) = failure {
        eprintln!("hubspot-outbox: {e}; lines before it were handled as listed above");
        return Ok(ExitCode::FAILURE);
    }
    Ok(if summary.rejected.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_summary(summary: &Summary) {
    let mut rejected = summary.rejected.clone();
    rejected.sort_by_key(|r| r.line);
    println!(
        "queued {}, duplicates {}, rejected {} (of {} lines)",
        summary.queued,
        summary.duplicates,
        rejected.len(),
        summary.lines_read
    );
    for r in rejected {
        println!("line {}: {}", r.line, r.message);
    }
}
