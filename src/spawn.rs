//! Starting the command: resolve it, then fork with everything set before `exec`.
//!
//! Everything the child does between fork and exec runs in `pre_exec`, where only async-signal-safe calls are
//! allowed (no allocation, no locks): join the run's cgroups, take its own process group (and the terminal's
//! foreground, when pynish holds it), arm PR_SET_PDEATHSIG, set the rlimits and the CPU affinity. Setting them there, not after the
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
use std::process::Command;

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
    /// The cgroup v2 group's directory, for a child born in it (`clone3`), when the backend has one; it is the
    /// group of `join_fds`, which the child writes only where the kernel refuses that.
    pub birth_group: Option<RawFd>,
    /// (resource, soft, hard) rlimits.
    pub rlimits: Vec<(Resource, u64, u64)>,
    /// Terminal descriptor whose foreground process group the command takes (pynish held it).
    pub terminal: Option<RawFd>,
    /// The scheduling niceness the command runs at: pynish's own before it raised its priority.
    pub nice: Option<i32>,
    /// `--cpus`: the affinity mask the command (and so every member) runs with, built before the fork.
    pub cpus: Option<libc::cpu_set_t>,
    /// `--output`: the pipe the command's stdout and stderr both go to.
    pub output: Option<RawFd>,
}

/// The affinity mask for `cpus`, built before any fork (the child only hands it to the kernel).
pub fn cpu_set(cpus: &[usize]) -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is plain bits and all-zero is the empty set; CPU_SET writes inside it for any index below
    // CPU_SETSIZE, which the filter keeps (`Limits` checked that each CPU is allowed, so none is dropped).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus.iter().filter(|&&cpu| cpu < libc::CPU_SETSIZE as usize) {
            libc::CPU_SET(cpu, &mut set);
        }
        set
    }
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

/// What the child does to itself between fork and exec, prepared before the fork so that it only passes values
/// to the kernel.
struct Steps {
    plan: Plan,
    parent: i32,
}

impl Steps {
    /// Joins the run's cgroups (unless `join` is false: the child was born in its group), takes its own process
    /// group (and the terminal's foreground, when pynish holds it), arms PR_SET_PDEATHSIG, sets the rlimits and
    /// the CPU affinity.
    ///
    /// # Safety
    /// Only in the forked child before exec: it calls only async-signal-safe functions (write, setpgid,
    /// sigprocmask, tcsetpgrp, setpriority, prctl, getppid, raise, setrlimit, sched_setaffinity, dup2, and in
    /// `inherit::restore_in_child` sigprocmask, signal, close) and allocates nothing: what it reads was built
    /// before the fork.
    unsafe fn apply(&self, join: bool) -> std::io::Result<()> {
        let Plan { join_fds, rlimits, terminal, nice, cpus, output, .. } = &self.plan;
        // SAFETY: see the function's contract.
        unsafe {
            for &fd in join_fds.iter().filter(|_| join) {
                if libc::write(fd, b"0\n".as_ptr().cast(), 2) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if libc::setpgid(0, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(tty) = *terminal {
                // Now in a background group, taking the terminal would stop us with SIGTTOU unless it is blocked.
                let mut set: libc::sigset_t = std::mem::zeroed();
                let mut old: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGTTOU);
                libc::sigprocmask(libc::SIG_BLOCK, &set, &mut old);
                libc::tcsetpgrp(tty, libc::getpid());
                libc::sigprocmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
            }
            if let Some(nice) = *nice {
                // Lowering one's priority is always allowed.
                libc::setpriority(libc::PRIO_PROCESS, 0, nice);
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != self.parent {
                // pynish died before the death signal was armed.
                libc::raise(libc::SIGKILL);
            }
            for &(resource, soft, hard) in rlimits {
                let limit = libc::rlimit { rlim_cur: soft, rlim_max: hard };
                if libc::setrlimit(resource as _, &limit) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if let Some(set) = cpus
                && libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) < 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // Last: the mask, SIGPIPE and the closed standard descriptors as the caller gave them.
            crate::inherit::restore_in_child();
            // After it: a stdout or stderr the caller had closed is the output pipe all the same.
            if let Some(fd) = *output
                && (libc::dup2(fd, 1) < 0 || libc::dup2(fd, 2) < 0)
            {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// Why exec'ing `path` failed with `e`, as the shell would say it.
fn exec_error(argv: &[OsString], path: &Path, e: std::io::Error) -> SpawnError {
    let shown = argv[0].to_string_lossy().into_owned();
    match e.raw_os_error() {
        // The file was there a moment ago (`resolve`): ENOENT now is its `#!` interpreter, missing.
        Some(libc::ENOENT) if path.exists() => SpawnError::NotExecutable(shown, why_exec_failed(path, libc::ENOENT)),
        Some(errno @ (libc::EACCES | libc::ENOEXEC | libc::EISDIR | libc::ETXTBSY | libc::ELIBBAD)) => {
            SpawnError::NotExecutable(shown, why_exec_failed(path, errno))
        }
        _ if e.kind() == std::io::ErrorKind::NotFound => SpawnError::NotFound(shown),
        _ => SpawnError::Setup(anyhow::Error::new(e).context(format!("cannot start {shown}"))),
    }
}

/// A started command.
#[derive(Debug, Clone, Copy)]
pub struct Started {
    pub pid: i32,
    /// Born in the plan's `birth_group` (no `cgroup.procs` written).
    pub born_in_group: bool,
}

/// Starts `argv` with `plan` applied in the child before exec. With a `birth_group`, the child is born in it
/// (`clone3`), and the usual fork, which joins by writing `cgroup.procs`, is only the fallback where the kernel
/// refuses that.
pub fn spawn(argv: &[OsString], plan: Plan) -> Result<Started, SpawnError> {
    let path = resolve(&argv[0])?;
    let steps = Steps { plan, parent: nix::unistd::getpid().as_raw() };
    #[cfg(target_os = "linux")]
    if let Some(group) = steps.plan.birth_group {
        let c = |s: &OsStr| std::ffi::CString::new(s.as_bytes());
        let (Ok(program), Ok(args)) = (c(path.as_os_str()), argv.iter().map(|a| c(a)).collect::<Result<Vec<_>, _>>())
        else {
            let shown = argv[0].to_string_lossy().into_owned();
            return Err(SpawnError::Setup(anyhow::anyhow!("cannot start {shown}: an argument holds a NUL byte")));
        };
        // SAFETY: `Steps::apply` is async-signal-safe and allocates nothing (its contract).
        match unsafe { crate::clone3::spawn_into(group, &program, &args, || steps.apply(false)) } {
            Ok(pid) => return Ok(Started { pid, born_in_group: true }),
            Err(crate::clone3::Error::Exec(e)) => return Err(exec_error(argv, &path, e)),
            Err(crate::clone3::Error::Refused) => {}
        }
    }
    let mut command = Command::new(&path);
    command.arg0(&argv[0]).args(&argv[1..]);
    // SAFETY: the closure runs in the forked child before exec; `Steps::apply` is async-signal-safe and
    // allocates nothing (its contract).
    unsafe {
        command.pre_exec(move || steps.apply(true));
    }
    command
        .spawn()
        .map(|child| Started { pid: child.id() as i32, born_in_group: false })
        .map_err(|e| exec_error(argv, &path, e))
}
