//! A destination given as a descriptor number (`--report-fd N`): checked open for writing before the run, and
//! written as it is, never reopened.

use anyhow::{Result, bail};
use std::io;

/// Whether pynish's descriptor `fd` is open, and was open when pynish started (Rust's runtime puts `/dev/null`
/// on a closed 0, 1 or 2: a report sent there would go nowhere, silently).
pub(super) fn descriptor_open(fd: i32) -> bool {
    // SAFETY: F_GETFD only reads the descriptor table; an unopened number yields EBADF.
    let open = unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0;
    open && !crate::inherit::was_closed(fd)
}

/// Refuses, before the run, a descriptor (`--report-fd`) that is not open for writing now rather than lose the
/// report at the end.
pub fn check_fd(fd: i32, flag: &str) -> Result<()> {
    if !descriptor_open(fd) {
        bail!("{flag} {fd} is not an open file descriptor");
    }
    // SAFETY: F_GETFL only reads the descriptor's status flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags & libc::O_ACCMODE == libc::O_RDONLY {
        bail!("{flag} {fd} is open for reading only");
    }
    Ok(())
}

/// Writes `line` to the open descriptor `fd` the caller passed (and `check_fd` checked), all of it.
pub fn write_fd(fd: i32, line: &str) -> io::Result<()> {
    let mut written = 0;
    while written < line.len() {
        // SAFETY: write reads only `line`'s bytes; fd is a plain number (a closed one yields EBADF).
        let n = unsafe { libc::write(fd, line[written..].as_ptr().cast(), line.len() - written) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        written += n as usize;
    }
    Ok(())
}
