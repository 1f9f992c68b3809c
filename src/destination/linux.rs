//! The destination rules' Linux calls: `/proc` (whose `fd/N` links name open files), `openat2` (which tells
//! such a link on the way apart), and where the kernel says an opened file is.

use super::{Dir, Entry, base_flags, new_mode, parent};
use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::FileStat;
use std::ffi::OsStr;
use std::fs;
use std::os::fd::{AsFd, OwnedFd};

/// The flags a directory is opened with: for its descriptor only (`O_PATH`), never to read it, so that a
/// directory its user may search but not read can still be walked through.
pub(super) fn dir_flags() -> OFlag {
    OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC
}

/// Whether `dir` is in `/proc`, whose `fd/N` links name open files rather than paths.
pub(super) fn in_proc(dir: &impl AsFd) -> bool {
    use nix::sys::statfs::{PROC_SUPER_MAGIC, fstatfs};
    fstatfs(dir).is_ok_and(|fs| fs.filesystem_type() == PROC_SUPER_MAGIC)
}

/// The link `name` in `dir`, followed by the kernel with `O_CREAT`; also whether a `/proc` fd link was on the
/// way (`RESOLVE_NO_MAGICLINKS` refuses it; the plain open then follows it).
pub(super) fn open_following(dir: &Dir, name: &OsStr) -> nix::Result<(OwnedFd, bool)> {
    use nix::fcntl::{OpenHow, ResolveFlag, openat2};
    let flags = base_flags() | OFlag::O_CREAT;
    let how = OpenHow::new().flags(flags).mode(new_mode()).resolve(ResolveFlag::RESOLVE_NO_MAGICLINKS);
    match openat2(&dir.fd, name, how) {
        Ok(fd) => Ok((fd, false)),
        Err(Errno::ELOOP) => openat(&dir.fd, name, flags, new_mode()).map(|fd| (fd, true)),
        // Before Linux 5.6, or a seccomp filter: no way to tell, so no append.
        Err(Errno::ENOSYS | Errno::EPERM | Errno::E2BIG) => {
            openat(&dir.fd, name, flags, new_mode()).map(|fd| (fd, false))
        }
        Err(e) => Err(e),
    }
}

/// Where the kernel says the opened regular file is (its `/proc/self/fd` link), if that entry is still this
/// very file: a link's target is replaced there, and nowhere else.
pub(super) fn locate(fd: &OwnedFd, st: &FileStat) -> Option<Entry> {
    use std::os::fd::AsRawFd;
    let at = fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
    let name = at.file_name()?.to_os_string();
    let dir = Dir::open(parent(&at)).ok()?;
    dir.holds(&name, st).then_some(Entry { dir, name })
}
