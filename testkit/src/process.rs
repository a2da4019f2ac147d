//! Server child processes that cannot outlive the test process that started them
//!
//! Each server runs in the foreground as our child, so its struct owns it and `Drop` can kill it.
//! Shared `static` servers never see `Drop`, and a test process killed by a signal runs no
//! destructors at all, so every server also gets a watchdog: a tiny `sh` loop that outlives us,
//! notices when the test process is gone, kills the server and removes its directory.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// How often readiness probes and exit checks poll; short because every start waits on it.
const POLL: Duration = Duration::from_millis(50);

/// How many log lines an error message quotes: enough for a bind error or a config complaint.
const LOG_TAIL_LINES: usize = 30;

/// The watchdog script: `$1` is the test process, `$2` the server, the rest is left-over files.
/// It polls every half second, which bounds how long a server outlives a killed test.
const WATCHDOG_SCRIPT: &str = r#"while kill -0 "$1" 2>/dev/null; do sleep 0.5; done
kill -9 "$2" 2>/dev/null
shift 2
rm -rf "$@""#;

/// A running server process plus the watchdog that guards it.
pub(crate) struct Supervised {
    /// Human name used in errors, e.g. "redis".
    name: &'static str,
    /// The server itself; killed on drop so a panicking test leaves nothing behind.
    child: Child,
    /// Kills `child` if the test process dies first; stopped before `child` so that it never
    /// outlives the server and later kills an unrelated process that reused the pid.
    watchdog: Option<Child>,
    /// Files whose tail explains a failed start: the captured stdout/stderr first.
    logs: Vec<PathBuf>,
    /// Files the server leaves outside its directory (weed's hard-coded /tmp sockets).
    leftovers: Vec<PathBuf>,
    /// Whether `child` has been reaped, so drop does not signal a pid that may be reused.
    reaped: bool,
}

impl Supervised {
    /// Spawns `cmd` with stdout and stderr appended to `log`, and a watchdog that removes
    /// `dir` and `leftovers` once the test process is gone.
    pub(crate) fn spawn(
        name: &'static str,
        cmd: &mut Command,
        dir: &Path,
        log: &Path,
        leftovers: Vec<PathBuf>,
    ) -> Result<Supervised> {
        let out = open_log(log)?;
        let err = out
            .try_clone()
            .context("failed to duplicate log file handle")?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("failed to spawn {name}: {cmd:?}"))?;
        let mut supervised = Supervised {
            name,
            child,
            watchdog: None,
            logs: vec![log.to_path_buf()],
            leftovers,
            reaped: false,
        };
        supervised.watchdog = Some(spawn_watchdog(
            supervised.child.id(),
            dir,
            &supervised.leftovers,
        )?);
        Ok(supervised)
    }

    /// Adds a log file that the server writes itself, to be quoted when start-up fails.
    pub(crate) fn add_log(&mut self, path: PathBuf) {
        self.logs.push(path);
    }

    /// The server's pid, for sending it signals.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends the server `signal` (as `kill` takes it, e.g. `-STOP`).
    pub(crate) fn signal(&self, signal: &str) -> Result<()> {
        let status = Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status()
            .context("failed to run kill")?;
        if !status.success() {
            bail!("kill {signal} {} ({}) failed", self.pid(), self.name);
        }
        Ok(())
    }

    /// The exit status if the server has already exited.
    pub(crate) fn exited(&mut self) -> Result<Option<ExitStatus>> {
        let status = self
            .child
            .try_wait()
            .with_context(|| format!("failed to poll {} process", self.name))?;
        if status.is_some() {
            self.reaped = true;
        }
        Ok(status)
    }

    /// Polls `probe` until it returns true, failing early (with the log tail) if the server exits
    /// and late if `timeout` passes; probe errors only mean "not yet".
    pub(crate) fn wait_ready(
        &mut self,
        timeout: Duration,
        mut probe: impl FnMut() -> Result<bool>,
    ) -> Result<Duration> {
        let started = Instant::now();
        let mut last_error = None;
        loop {
            if let Some(status) = self.exited()? {
                bail!(
                    "{} exited during start-up ({status}); log tail:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            match probe() {
                Ok(true) => return Ok(started.elapsed()),
                Ok(false) => {}
                Err(err) => last_error = Some(format!("{err:#}")),
            }
            if started.elapsed() > timeout {
                bail!(
                    "{} not ready after {timeout:?} (last probe error: {}); log tail:\n{}",
                    self.name,
                    last_error.as_deref().unwrap_or("none"),
                    self.log_tail()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits up to `timeout` for the server to exit by itself; true if it did.
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> Result<bool> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if self.exited()?.is_some() {
                self.stop_watchdog();
                self.remove_leftovers();
                return Ok(true);
            }
            std::thread::sleep(POLL);
        }
        Ok(false)
    }

    /// Asks the server to stop with SIGTERM, and kills it if it has not exited after `grace`.
    pub(crate) fn terminate(&mut self, grace: Duration) -> Result<()> {
        if self.exited()?.is_none() {
            // std only sends SIGKILL, and the workspace forbids the unsafe code libc would need,
            // so SIGTERM goes through the shell's kill builtin (procps' kill(1) is not on every
            // minimal Debian)
            let pid = self.pid().to_string();
            let status = Command::new("sh")
                .args(["-c", r#"kill -TERM "$1""#, "sh", &pid])
                .stderr(Stdio::null())
                .status()
                .context("failed to run sh to send SIGTERM")?;
            if !status.success() && self.exited()?.is_none() {
                bail!("kill -TERM {pid} failed for {}", self.name);
            }
        }
        if !self.wait_exit(grace)? {
            self.kill()?;
        }
        Ok(())
    }

    /// Kills the server with SIGKILL and waits until it is gone.
    pub(crate) fn kill(&mut self) -> Result<()> {
        self.stop_watchdog();
        if !self.reaped {
            // kill fails only when the process has already exited: the wait below settles it
            let _ = self.child.kill();
            self.child
                .wait()
                .with_context(|| format!("failed to wait for {} to exit", self.name))?;
            self.reaped = true;
        }
        self.remove_leftovers();
        Ok(())
    }

    /// The last lines of every log file, each under its file name.
    pub(crate) fn log_tail(&self) -> String {
        self.logs
            .iter()
            .map(|path| format!("==> {} <==\n{}", path.display(), tail(path, LOG_TAIL_LINES)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn stop_watchdog(&mut self) {
        if let Some(mut watchdog) = self.watchdog.take() {
            // the watchdog is a plain sh loop: SIGKILL is safe, and it must not run its cleanup
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
    }

    fn remove_leftovers(&self) {
        for path in &self.leftovers {
            // absent is the normal case: most servers clean up after themselves
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// Starts the watchdog for `server_pid`; it is detached from our stdio so that it never holds a
/// pipe of the test runner open after the test process exits.
fn spawn_watchdog(server_pid: u32, dir: &Path, leftovers: &[PathBuf]) -> Result<Child> {
    Command::new("sh")
        .arg("-c")
        .arg(WATCHDOG_SCRIPT)
        .arg("testkit-watchdog")
        .arg(std::process::id().to_string())
        .arg(server_pid.to_string())
        .arg(dir)
        .args(leftovers)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("failed to spawn watchdog (sh)")
}

fn open_log(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("failed to open log file {}", path.display()))
}

/// The last `lines` lines of a file, reading at most its last 64 KiB.
fn tail(path: &Path, lines: usize) -> String {
    const MAX_BYTES: u64 = 64 * 1024;
    let Ok(mut file) = File::open(path) else {
        return "(no log file)".to_string();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(MAX_BYTES)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Finds an executable by name on PATH, then in `extra_dirs` (e.g. /usr/sbin, which is not on
/// a normal user's PATH but is where Debian puts clickhouse-server).
pub(crate) fn find_program(name: &str, extra_dirs: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra_dirs.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Runs `attempt` and, if it fails, once more: a free port can be taken by another process
/// between our probe and the server's bind, and a second set of ports almost never is.
pub(crate) fn with_one_retry<T>(what: &str, mut attempt: impl FnMut() -> Result<T>) -> Result<T> {
    match attempt() {
        Ok(value) => Ok(value),
        Err(first) => attempt().map_err(|second| {
            second.context(format!(
                "{what} failed to start twice; first attempt: {first:#}"
            ))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_only_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, "a\nb\nc\nd\n").unwrap();
        assert_eq!(tail(&path, 2), "c\nd");
        assert_eq!(tail(&dir.path().join("missing"), 2), "(no log file)");
    }

    #[test]
    fn finds_sh_on_path() {
        assert!(find_program("sh", &[]).is_some());
        assert!(find_program("testkit-no-such-program", &["/usr/sbin"]).is_none());
    }

    #[test]
    fn retry_runs_the_attempt_again_once() {
        let mut calls = 0;
        let result = with_one_retry("thing", || {
            calls += 1;
            if calls == 1 {
                bail!("port taken")
            }
            Ok(calls)
        });
        assert_eq!(result.unwrap(), 2);

        let err = with_one_retry::<()>("thing", || bail!("broken")).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("thing failed to start twice"), "{text}");
    }
}
