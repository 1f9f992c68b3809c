//! Starting the command: resolve it, then fork with everything set before `exec`.
//!
//! Everything the child does between fork and exec runs in `pre_exec`, where only async-signal-safe calls are
//! allowed (no allocation, no locks): join the run's cgroups, take its own process group (and the terminal's
//! foreground, when pynish holds it), arm PR_SET_PDEATHSIG, set the rlimits. Setting them there, not after the
//! spawn, leaves no window in which the command runs unlimited.

use anyhow::Result;
use nix::libc;
use nix::sys::resource::Resource;
use std::ffi::{OsStr, OsString};
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

/// Why the command could not be started.
#[derive(Debug)]
pub enum SpawnError {
    /// The command does not exist (exit 127).
    NotFound(String),
    /// The command exists but cannot be executed (exit 126), and why, as the shell says it ("Permission
    /// denied", "Is a directory", "bad interpreter /x: No such file or directory").
    NotExecutable(String, String),
    /// pynish failed to set the command up (exit 125).
    Setup(anyhow::Error),
}

/// Everything the child sets on itself before exec.
#[derive(Debug, Default)]
pub struct Plan {
    /// `cgroup.procs` descriptors to write `0` to.
    pub join_fds: Vec<RawFd>,
    /// (resource, soft, hard) rlimits.
    pub rlimits: Vec<(Resource, u64, u64)>,
    /// Terminal descriptor whose foreground process group the command takes (pynish held it).
    pub terminal: Option<RawFd>,
    /// The scheduling niceness the command runs at: pynish's own before it raised its priority.
    pub nice: Option<i32>,
}

fn is_executable(meta: &std::fs::Metadata) -> bool {
    meta.is_file() && meta.permissions().mode() & 0o111 != 0
}

/// Why a file found on the way cannot be executed, in the errno's words as a shell prints them.
fn why_not_executable(meta: &std::fs::Metadata) -> String {
    if meta.is_dir() { errno_text(libc::EISDIR) } else { errno_text(libc::EACCES) }
}

/// The C library's text for `errno` ("No such file or directory"), without Rust's "(os error N)".
fn errno_text(errno: i32) -> String {
    nix::errno::Errno::from_raw(errno).desc().to_string()
}

/// Why the kernel refused to exec `path` with `errno`: for ENOENT on a file that exists, the interpreter its `#!`
/// line names is missing (the kernel says only ENOENT, as for a missing file; bash says "bad interpreter").
fn why_exec_failed(path: &Path, errno: i32) -> String {
    if errno == libc::ENOENT
        && let Some(interpreter) = interpreter(path)
    {
        return format!("bad interpreter {interpreter}: {}", errno_text(errno));
    }
    errno_text(errno)
}

/// The interpreter a `#!` line names, if the file starts with one.
fn interpreter(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut head = [0u8; 256];
    let n = std::fs::File::open(path).ok()?.read(&mut head).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = line.split(|&b| b == b'\n').next()?;
    let text = String::from_utf8_lossy(line);
    text.split_ascii_whitespace().next().map(str::to_string)
}

/// Finds the program as `execvp` would, so that "not found" (127) and "not executable" (126) are told apart
/// before anything is started.
pub fn resolve(program: &OsStr) -> Result<PathBuf, SpawnError> {
    let shown = program.to_string_lossy().into_owned();
    if program.is_empty() {
        return Err(SpawnError::NotFound(shown));
    }
    if program.as_bytes().contains(&b'/') {
        let path = PathBuf::from(program);
        return match path.metadata() {
            Err(_) => Err(SpawnError::NotFound(shown)),
            Ok(meta) if is_executable(&meta) => Ok(path),
            Ok(meta) => Err(SpawnError::NotExecutable(shown, why_not_executable(&meta))),
        };
    }
    let search = std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/local/bin:/usr/bin:/bin"));
    let mut not_executable = None;
    for dir in std::env::split_paths(&search) {
        let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
        let candidate = dir.join(program);
        match candidate.metadata() {
            Ok(meta) if is_executable(&meta) => return Ok(candidate),
            Ok(meta) => not_executable = not_executable.or_else(|| Some(why_not_executable(&meta))),
            Err(_) => {}
        }
    }
    match not_executable {
        Some(why) => Err(SpawnError::NotExecutable(shown, why)),
        None => Err(SpawnError::NotFound(shown)),
    }
}

/// Starts `argv` with `plan` applied in the child before exec.
pub fn spawn(argv: &[OsString], plan: Plan) -> Result<Child, SpawnError> {
    let path = resolve(&argv[0])?;
    let mut command = Command::new(&path);
    command.arg0(&argv[0]).args(&argv[1..]);
    let parent = nix::unistd::getpid().as_raw();
    let Plan { join_fds, rlimits, terminal, nice } = plan;
    // SAFETY: the closure runs in the forked child before exec and calls only async-signal-safe functions
    // (write, setpgid, sigprocmask, tcsetpgrp, setpriority, prctl, getppid, raise, setrlimit, and in
    // `inherit::restore_in_child` sigprocmask, signal, close); it allocates nothing: the vectors it reads were
    // built before the fork.
    unsafe {
        command.pre_exec(move || {
            for &fd in &join_fds {
                if libc::write(fd, b"0\n".as_ptr().cast(), 2) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if libc::setpgid(0, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(tty) = terminal {
                // Now in a background group, taking the terminal would stop us with SIGTTOU unless it is blocked.
                let mut set: libc::sigset_t = std::mem::zeroed();
                let mut old: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGTTOU);
                libc::sigprocmask(libc::SIG_BLOCK, &set, &mut old);
                libc::tcsetpgrp(tty, libc::getpid());
                libc::sigprocmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
            }
            if let Some(nice) = nice {
                // Lowering one's priority is always allowed.
                libc::setpriority(libc::PRIO_PROCESS, 0, nice);
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                // pynish died before the death signal was armed.
                libc::raise(libc::SIGKILL);
            }
            for &(resource, soft, hard) in &rlimits {
                let limit = libc::rlimit { rlim_cur: soft, rlim_max: hard };
                if libc::setrlimit(resource as _, &limit) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // Last: the mask, SIGPIPE and the closed standard descriptors as the caller gave them.
            crate::inherit::restore_in_child();
            Ok(())
        });
    }
    command.spawn().map_err(|e| {
        let shown = argv[0].to_string_lossy().into_owned();
        match e.raw_os_error() {
            // The file was there a moment ago (`resolve`): ENOENT now is its `#!` interpreter, missing.
            Some(libc::ENOENT) if path.exists() => {
                SpawnError::NotExecutable(shown, why_exec_failed(&path, libc::ENOENT))
            }
            Some(errno @ (libc::EACCES | libc::ENOEXEC | libc::EISDIR | libc::ETXTBSY | libc::ELIBBAD)) => {
                SpawnError::NotExecutable(shown, why_exec_failed(&path, errno))
            }
            _ if e.kind() == std::io::ErrorKind::NotFound => SpawnError::NotFound(shown),
            _ => SpawnError::Setup(anyhow::Error::new(e).context(format!("cannot start {shown}"))),
        }
    })
}
