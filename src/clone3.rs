//! Starting the command already inside its cgroup v2 group: `clone3` with `CLONE_INTO_CGROUP` (Linux ≥ 5.7).
//!
//! Moving a process into a group by writing `cgroup.procs` takes the kernel's cgroup threadgroup rwsem for
//! writing, which waits for an RCU grace period when the machine was idle: several milliseconds per run, more
//! than everything else pynish does to start a command. A child born in its group costs no such write: the
//! kernel places it while it creates it, under the read side of that lock.
//!
//! The child is a copy of pynish, as after `fork`, but made by the raw system call: no `atfork` handler runs, so
//! between the call and `exec` it does only what `spawn`'s `pre_exec` does (async-signal-safe calls, no
//! allocation), and reports a failed `exec` on a close-on-exec pipe as `std::process::Command` does.
//!
//! Refused where the kernel is older (ENOSYS, E2BIG), where a seccomp filter answers for it (ENOSYS, EPERM: some
//! container runtimes do, so that the C library falls back to `clone`), or where the group cannot take the child:
//! the caller then starts it the usual way and the child writes `cgroup.procs` itself.

use nix::libc;
use std::ffi::CString;
#[cfg(test)]
use std::fs::File;
use std::io;
use std::os::fd::RawFd;

/// `CLONE_INTO_CGROUP` from `<linux/sched.h>`.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` of `<linux/sched.h>` up to `cgroup` (`CLONE_ARGS_SIZE_VER2`, 88 bytes).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Why no child was started in its group.
#[derive(Debug)]
pub enum Error {
    /// The kernel would not create the child in the group (whatever the errno: the usual way reports a real
    /// failure, such as a fork refused by `pids.max`, as it always has): start it the usual way.
    Refused,
    /// The child was created, but `prepare` or `exec` failed with this error (the child is reaped).
    Exec(io::Error),
}

/// Starts `path` with `argv` (and pynish's environment) as a child born in the cgroup v2 group whose directory
/// `group` is open, after `prepare` has run in the child; returns its pid.
///
/// # Safety
/// `prepare` runs in the child of a possibly multi-threaded process, between `clone3` and `exec`: it may only
/// make async-signal-safe calls and must not allocate, lock or unwind.
pub unsafe fn spawn_into(
    group: RawFd,
    path: &CString,
    argv: &[CString],
    prepare: impl Fn() -> io::Result<()>,
) -> Result<i32, Error> {
    let mut pointers: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    pointers.push(std::ptr::null());
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|_| Error::Refused)?;
    let args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: group as u64,
        ..CloneArgs::default()
    };
    // SAFETY: clone3 reads `args` (of the size given) and, without CLONE_VM, gives the child a copy of our
    // memory, as fork does; the child below runs only `prepare` (see the function's contract), writes, execv and
    // _exit, on values prepared before the call.
    let pid = unsafe { libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, size_of::<CloneArgs>()) };
    if pid == 0 {
        // SAFETY: in the child; every call is async-signal-safe and touches only memory prepared before.
        unsafe {
            use std::os::fd::AsRawFd;
            let fd = write.as_raw_fd();
            // As std::process::Command does before `pre_exec`: an empty mask, and SIGPIPE at its default (Rust
            // ignores it in pynish; `prepare` ignores it again if pynish's caller had).
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            let errno = match prepare() {
                Ok(()) => {
                    libc::execv(path.as_ptr(), pointers.as_ptr());
                    io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINVAL)
                }
                Err(e) => e.raw_os_error().unwrap_or(libc::EINVAL),
            };
            let bytes = errno.to_ne_bytes();
            libc::write(fd, bytes.as_ptr().cast(), bytes.len());
            libc::_exit(127);
        }
    }
    if pid < 0 {
        return Err(Error::Refused);
    }
    let pid = pid as i32;
    drop(write);
    let mut bytes = [0u8; 4];
    let mut got = 0;
    while got < bytes.len() {
        match nix::unistd::read(&read, &mut bytes[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
    if got == 0 {
        // End of file: the exec closed the pipe.
        return Ok(pid);
    }
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    Err(Error::Exec(io::Error::from_raw_os_error(i32::from_ne_bytes(bytes))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn c(s: &str) -> CString {
        CString::new(s).unwrap()
    }

    fn wait(pid: i32) -> nix::sys::wait::WaitStatus {
        nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap()
    }

    /// A group of its own in a writable cgroup v2 mount, or None (with the reason printed) where there is none.
    fn v2_group(name: &str) -> Option<std::path::PathBuf> {
        let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
        let Some(root) =
            mounts.lines().map(|l| l.split(' ').collect::<Vec<_>>()).find(|f| f.get(2) == Some(&"cgroup2"))
        else {
            eprintln!("SKIP {name}: no cgroup v2 mount here");
            return None;
        };
        let dir = std::path::Path::new(root[1]).join(format!("pynish-test-clone3-{}-{name}", std::process::id()));
        if let Err(e) = std::fs::create_dir(&dir) {
            eprintln!("SKIP {name}: cannot make a group in {}: {e}", root[1]);
            return None;
        }
        Some(dir)
    }

    #[test]
    fn a_child_is_born_in_its_group_and_runs_there() {
        let Some(dir) = v2_group("born") else { return };
        let out = tempfile::NamedTempFile::new().unwrap();
        let script = format!("cat /proc/self/cgroup > {}", out.path().display());
        let group = File::open(&dir).unwrap();
        // SAFETY: the closure does nothing.
        let started =
            unsafe { spawn_into(group.as_raw_fd(), &c("/bin/sh"), &[c("sh"), c("-c"), c(&script)], || Ok(())) };
        let result = started.map(wait);
        let text = std::fs::read_to_string(out.path()).unwrap_or_default();
        let _ = std::fs::remove_dir(&dir);
        match result {
            Ok(status) => {
                assert!(matches!(status, nix::sys::wait::WaitStatus::Exited(_, 0)), "{status:?}");
                let name = dir.file_name().unwrap().to_string_lossy();
                assert!(text.lines().any(|l| l.starts_with("0::/") && l.ends_with(&*name)), "{text}");
            }
            Err(Error::Refused) => eprintln!("SKIP: this kernel refuses clone3 into a cgroup"),
            Err(Error::Exec(e)) => panic!("exec failed: {e}"),
        }
    }

    #[test]
    fn a_failed_exec_comes_back_with_its_errno() {
        let Some(dir) = v2_group("noexec") else { return };
        let group = File::open(&dir).unwrap();
        // SAFETY: the closure does nothing.
        let started = unsafe { spawn_into(group.as_raw_fd(), &c("/nonexistent/program"), &[c("program")], || Ok(())) };
        let _ = std::fs::remove_dir(&dir);
        match started {
            Err(Error::Exec(e)) => assert_eq!(e.raw_os_error(), Some(libc::ENOENT)),
            Err(Error::Refused) => eprintln!("SKIP: this kernel refuses clone3 into a cgroup"),
            Ok(pid) => panic!("a missing program started as pid {pid}"),
        }
    }

    #[test]
    fn a_directory_that_is_no_cgroup_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let group = File::open(dir.path()).unwrap();
        // SAFETY: the closure does nothing.
        let started = unsafe { spawn_into(group.as_raw_fd(), &c("/bin/true"), &[c("true")], || Ok(())) };
        assert!(matches!(started, Err(Error::Refused)), "{started:?}");
    }
}
