//! Child processes that can never outlive a test.
//!
//! Every process the harness starts (Kubo daemons, the sidecar, Node running Helia, one-shot
//! CLI calls) goes through [`Daemon::spawn`] or [`run`]: it gets its own process group, its
//! stdout and stderr go to files (so a chatty child can never block on a full pipe), and
//! dropping the handle — including during a panic's unwind — sends SIGTERM to the whole group,
//! waits [`TERM_GRACE`], then SIGKILLs it. Errors carry the tail of the child's stderr.
//!
//! Signals are sent with the system `kill` command rather than through `libc`, so this crate
//! adds no dependency for them.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// How long a child gets between SIGTERM and SIGKILL when a handle is dropped.
pub const TERM_GRACE: Duration = Duration::from_secs(5);
/// How many lines of a child's stderr go into an error message.
pub const TAIL_LINES: usize = 40;
/// Poll interval while waiting for a child or a file it writes.
pub const POLL: Duration = Duration::from_millis(50);

/// A running child process in its own process group, killed (group and all) on drop.
pub struct Daemon {
    name: String,
    child: Option<Child>,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Daemon {
    /// Starts `cmd` as `name`, with stdout/stderr captured in `log_dir/<name>.{stdout,stderr}`.
    pub fn spawn(name: &str, mut cmd: Command, log_dir: &Path) -> Result<Daemon> {
        let stdout = log_dir.join(format!("{name}.stdout"));
        let stderr = log_dir.join(format!("{name}.stderr"));
        cmd.stdin(Stdio::null())
            .stdout(
                File::create(&stdout).with_context(|| format!("creating {}", stdout.display()))?,
            )
            .stderr(
                File::create(&stderr).with_context(|| format!("creating {}", stderr.display()))?,
            )
            .process_group(0);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {name}: {:?}", cmd.get_program()))?;
        Ok(Daemon {
            name: name.to_owned(),
            child: Some(child),
            stdout,
            stderr,
        })
    }

    /// The child's name, as given to [`Daemon::spawn`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Path of the file that receives the child's stdout.
    pub fn stdout_path(&self) -> &Path {
        &self.stdout
    }

    /// Path of the file that receives the child's stderr.
    pub fn stderr_path(&self) -> &Path {
        &self.stderr
    }

    /// Fails (with the stderr tail) if the child has already exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        let Some(child) = self.child.as_mut() else {
            bail!("{} was already stopped", self.name);
        };
        if let Some(status) = child.try_wait()? {
            bail!(
                "{} exited early with {status}\n{}",
                self.name,
                self.logs_tail()
            );
        }
        Ok(())
    }

    /// The last [`TAIL_LINES`] lines of stderr and stdout, labelled, for error messages.
    pub fn logs_tail(&self) -> String {
        format!(
            "--- {} stderr (tail) ---\n{}\n--- {} stdout (tail) ---\n{}",
            self.name,
            tail_lines(&self.stderr, TAIL_LINES),
            self.name,
            tail_lines(&self.stdout, TAIL_LINES)
        )
    }

    /// Sends `SIG<sig>` (e.g. `HUP`) to the child alone.
    pub fn signal(&self, sig: &str) -> Result<()> {
        let Some(child) = self.child.as_ref() else {
            bail!("{} is not running", self.name);
        };
        let status = Command::new("kill")
            .args(["-s", sig, &child.id().to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -s {sig} {} failed: {status}", self.name);
        }
        Ok(())
    }

    /// Sends SIGTERM to the process group and waits up to `grace` for the leader to exit;
    /// then SIGKILLs the group. Returns the leader's exit status.
    pub fn terminate(&mut self, grace: Duration) -> Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("{} was already stopped", self.name);
        };
        if let Some(status) = child.try_wait()? {
            signal_group(child.id(), "KILL"); // reap stragglers left in the group
            return Ok(status);
        }
        signal_group(child.id(), "TERM");
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                signal_group(child.id(), "KILL");
                return Ok(status);
            }
            std::thread::sleep(POLL);
        }
        signal_group(child.id(), "KILL");
        let status = child.wait()?;
        bail!(
            "{} did not exit within {grace:?} of SIGTERM and was killed ({status})\n{}",
            self.name,
            self.logs_tail()
        )
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.terminate(TERM_GRACE);
        }
    }
}

/// Sends `SIG<sig>` to the process group led by `pid` (errors ignored: it may be gone).
fn signal_group(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args(["-s", sig, "--", &format!("-{pid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The last `n` lines of a text file (lossy UTF-8), or a note saying why there are none.
pub fn tail_lines(path: &Path, n: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("({}: {e})", path.display()),
    }
}

/// Output of a finished one-shot command.
pub struct Output {
    /// Everything the command wrote to stdout.
    pub stdout: Vec<u8>,
    /// Everything the command wrote to stderr, lossily decoded.
    pub stderr: String,
}

/// Runs `cmd` to completion within `timeout`; fails with its stderr on a non-zero exit or on
/// timeout (the process group is killed). `name` labels errors and the capture files in
/// `log_dir`.
pub fn run(name: &str, cmd: Command, log_dir: &Path, timeout: Duration) -> Result<Output> {
    let described = describe(&cmd);
    let mut daemon = Daemon::spawn(name, cmd, log_dir)?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        let child = daemon
            .child
            .as_mut()
            .expect("child present until terminate");
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = daemon.terminate(Duration::from_secs(1));
            bail!(
                "`{described}` did not finish within {timeout:?}\n{}",
                daemon.logs_tail()
            );
        }
        std::thread::sleep(POLL);
    };
    // The leader has exited; make sure nothing it started lingers.
    let _ = daemon.terminate(Duration::ZERO);
    let stdout = std::fs::read(&daemon.stdout)?;
    let stderr = String::from_utf8_lossy(&std::fs::read(&daemon.stderr)?).into_owned();
    if !status.success() {
        bail!(
            "`{described}` failed with {status}\n--- stderr (tail) ---\n{}",
            tail_lines(&daemon.stderr, TAIL_LINES)
        );
    }
    Ok(Output { stdout, stderr })
}

/// `program arg arg…` for error messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// Polls `f` every [`POLL`] until it returns `Some`, or fails after `timeout` saying what was
/// awaited.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(POLL);
    }
}
