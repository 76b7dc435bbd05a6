//! systemd's notification protocol, without a library: one datagram per message to the
//! socket named by `$NOTIFY_SOCKET` (`READY=1`, `STOPPING=1`, `WATCHDOG=1`). Outside
//! systemd (no `$NOTIFY_SOCKET`) every call does nothing.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Sends one message to systemd, if it is listening. Errors are ignored on purpose: a
/// lost notification must never stop the daemon (systemd then acts on its own timeouts).
pub fn notify(message: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(socket) = UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let _ = if let Some(name) = bytes.strip_prefix(b"@") {
        // An abstract socket (Linux): `@name`.
        use std::os::linux::net::SocketAddrExt;
        match std::os::unix::net::SocketAddr::from_abstract_name(name) {
            Ok(addr) => socket.send_to_addr(message.as_bytes(), &addr),
            Err(e) => Err(e),
        }
    } else {
        socket.send_to(message.as_bytes(), &path)
    };
}

/// How often to ping the watchdog: half of `$WATCHDOG_USEC`, if systemd asked for pings
/// from this process (`$WATCHDOG_PID` unset or ours).
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// When a loop last went round. The watchdog pings systemd only while every loop it
/// watches is fresh, so a stuck loop stops the pings and systemd restarts the daemon.
#[derive(Debug)]
pub struct Heartbeat {
    start: std::time::Instant,
    last_ms: std::sync::atomic::AtomicU64,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Self {
            start: std::time::Instant::now(),
            last_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl Heartbeat {
    pub fn beat(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn age(&self) -> Duration {
        let last = self.last_ms.load(std::sync::atomic::Ordering::Relaxed);
        self.start
            .elapsed()
            .saturating_sub(Duration::from_millis(last))
    }
}
