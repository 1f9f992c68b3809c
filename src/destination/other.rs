//! Stand-ins for the Linux calls of `linux.rs` where there is no `/proc`, `O_PATH` or `openat2`: a link is
//! followed by the plain open, and a link's target is written in place rather than replaced.

use super::{Dir, Entry, base_flags, new_mode};
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::FileStat;
use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};

/// The flags a directory is opened with (no `O_PATH` here: read-only).
pub(super) fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC
}

/// No `/proc` whose links name open files.
pub(super) fn in_proc(_dir: &impl AsFd) -> bool {
    false
}

pub(super) fn open_following(dir: &Dir, name: &OsStr) -> nix::Result<(OwnedFd, bool)> {
    openat(&dir.fd, name, base_flags() | OFlag::O_CREAT, new_mode()).map(|fd| (fd, false))
}

pub(super) fn locate(_fd: &OwnedFd, _st: &FileStat) -> Option<Entry> {
    None
}
