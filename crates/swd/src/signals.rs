//! Waiting for SIGINT or SIGTERM, the two ways operators and supervisors ask a node to stop, and
//! for the end of the `swd local` that started this process.
//!
//! ```text
//! swd local --spawn(pre_exec: PR_SET_PDEATHSIG=SIGTERM, parent check; env SWD_PARENT_PID)--> child
//! swd local dies (even SIGKILL) --> the kernel sends the child SIGTERM      (Linux)
//!                               --> the child sees getppid() change         (any Unix, <= 200 ms)
//!                               --> the child stops as on SIGTERM
//! ```

use std::time::Duration;

use tokio::signal::unix::{signal, Signal, SignalKind};

/// The environment variable through which `swd local` tells its children its pid: they stop
/// when their parent is no longer that process.
pub const PARENT_PID_ENV: &str = "SWD_PARENT_PID";

/// How often a child checks that its parent lives (where `PR_SET_PDEATHSIG` is not available,
/// or as a second line behind it).
const PARENT_CHECK: Duration = Duration::from_millis(200);

/// A signal that asks the process to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopSignal {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM.
    Terminate,
    /// The `swd local` that started this process is gone.
    ParentGone,
}

impl StopSignal {
    /// The signal's name as a user would write it.
    pub fn name(self) -> &'static str {
        match self {
            StopSignal::Interrupt => "SIGINT",
            StopSignal::Terminate => "SIGTERM",
            StopSignal::ParentGone => "the end of its parent",
        }
    }

    /// The shell's convention for a process stopped by a signal: 128 + the signal's number.
    pub fn exit_code(self) -> u8 {
        match self {
            StopSignal::Interrupt => 128 + 2,
            StopSignal::Terminate | StopSignal::ParentGone => 128 + 15,
        }
    }
}

/// Listens for SIGINT and SIGTERM from the moment it is made: a signal that arrives before
/// [`StopSignals::recv`] is polled is kept, not lost (nor does it kill the process).
pub struct StopSignals {
    interrupt: Option<Signal>,
    terminate: Option<Signal>,
}

impl StopSignals {
    /// Starts listening.
    pub fn listen() -> Self {
        let listen = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for {name}");
                None
            }
        };
        StopSignals {
            interrupt: listen(SignalKind::interrupt(), "SIGINT"),
            terminate: listen(SignalKind::terminate(), "SIGTERM"),
        }
    }

    /// The next SIGINT or SIGTERM.
    pub async fn recv(&mut self) -> StopSignal {
        async fn next(s: &mut Option<Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = next(&mut self.interrupt) => StopSignal::Interrupt,
            _ = next(&mut self.terminate) => StopSignal::Terminate,
        }
    }
}

/// Resolves when the process receives SIGINT (Ctrl-C) or SIGTERM, or when the `swd local` that
/// started it (named by [`PARENT_PID_ENV`]) is gone.
pub async fn shutdown_requested() -> StopSignal {
    let mut signals = StopSignals::listen();
    let stop = tokio::select! {
        s = signals.recv() => s,
        _ = parent_gone() => StopSignal::ParentGone,
    };
    tracing::info!("{} received", stop.name());
    stop
}

/// Never resolves unless [`PARENT_PID_ENV`] names a parent and this process's parent is no
/// longer it.
async fn parent_gone() {
    let Some(parent) = std::env::var(PARENT_PID_ENV)
        .ok()
        .and_then(|p| p.parse::<i32>().ok())
    else {
        return std::future::pending().await;
    };
    let mut tick = tokio::time::interval(PARENT_CHECK);
    loop {
        tick.tick().await;
        // SAFETY: getppid(2) has no preconditions and cannot fail.
        if unsafe { libc::getppid() } != parent {
            return;
        }
    }
}

/// Makes a child process stop when this process dies, however it dies: on Linux the kernel
/// sends it SIGTERM (`PR_SET_PDEATHSIG`); everywhere, the child watches its parent's pid
/// ([`PARENT_PID_ENV`]). The child also goes into its own process group, so that a terminal's
/// Ctrl-C reaches only this process, which then stops the children in order.
///
/// The kernel's death signal fires when the *thread* that spawned the child ends: spawn from
/// the main thread or a runtime worker thread, never from `spawn_blocking` (whose threads end
/// when idle).
pub fn bind_to_this_process(command: &mut tokio::process::Command) {
    let parent = std::process::id();
    command.env(PARENT_PID_ENV, parent.to_string()).process_group(0);
    #[cfg(target_os = "linux")]
    {
        let parent = i32::try_from(parent).unwrap_or(i32::MAX);
        // SAFETY: between fork and exec only async-signal-safe calls: prctl(2), getppid(2) and
        // _exit(2); nothing allocates or takes a lock.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died between fork and prctl: then no signal will come.
                if libc::getppid() != parent {
                    libc::_exit(143);
                }
                Ok(())
            });
        }
    }
}
