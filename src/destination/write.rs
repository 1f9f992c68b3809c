//! Writing an opened destination: the report's atomic replace (or its write in place), the bounded write to a
//! FIFO, the timeline's file from its header on.

use super::{Entry, Opened, PATIENCE, is, new_mode, open, shown};
use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{FileStat, Mode, SFlag};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::Instant;

/// A `--timeline` destination, opened before the run and written while it runs.
pub struct Timeline {
    /// The file, non-blocking until `begin` has written the header.
    pub file: File,
    /// Whether it is truncated when the run goes ahead: a regular file pynish may rewrite, not someone's open
    /// file reached through `/proc` (stdout redirected to a file), nor a FIFO or a device.
    truncate: bool,
    /// The entry pynish made, removed again by `remove_made` if the run is refused.
    made: Option<Entry>,
}

/// Opens the timeline `path` (close-on-exec: the command does not inherit it), waiting at most `PATIENCE` for a
/// FIFO's reader. Nothing is truncated yet: a run refused before it starts keeps an old timeline.
pub fn open_timeline(path: &Path) -> Result<Timeline> {
    let opened = open(path, "timeline", Instant::now() + PATIENCE)?;
    if opened.through_fd {
        set_flags(&opened.file, |flags| flags | OFlag::O_APPEND)
            .with_context(|| format!("cannot write the timeline to {}", shown(path)))?;
    }
    let truncate = is(&opened.st, SFlag::S_IFREG) && !opened.through_fd;
    let made = opened.entry.filter(|_| opened.created);
    Ok(Timeline { file: opened.file, truncate, made })
}

/// Changes the status flags of `file`'s open description (shared by its duplicates).
fn set_flags(file: &File, change: impl FnOnce(OFlag) -> OFlag) -> io::Result<()> {
    use nix::fcntl::{FcntlArg, fcntl};
    let flags = OFlag::from_bits_truncate(fcntl(file, FcntlArg::F_GETFL)?);
    fcntl(file, FcntlArg::F_SETFL(change(flags)))?;
    Ok(())
}

impl Timeline {
    /// Once the run goes ahead: truncates the file (if it is one pynish may rewrite) and writes `header` and its
    /// newline, waiting at most `PATIENCE` for a FIFO's reader to make room; then makes the file blocking, for
    /// the writer thread (which may wait; the watch loop never does).
    pub fn begin(&self, header: &str) -> io::Result<()> {
        if self.truncate {
            self.file.set_len(0)?;
        }
        write_by(&self.file, format!("{header}\n").as_bytes(), Instant::now() + PATIENCE)?;
        set_flags(&self.file, |flags| flags & !OFlag::O_NONBLOCK)
    }

    /// Removes the file pynish made, if its name still holds it: a refused run leaves nothing behind.
    pub fn remove_made(&mut self) {
        if let Some(entry) = self.made.take() {
            entry.remove_if_holds(&self.file);
        }
    }
}

/// Writes `line` (one JSON report and its newline) to `path`, by the rules of the module docs, within
/// `PATIENCE` when it goes to a FIFO. A file pynish made for it is removed again if the report cannot be written.
pub fn write_report(path: &Path, line: &str) -> Result<()> {
    let deadline = Instant::now() + PATIENCE;
    let context = || format!("cannot write the report to {}", shown(path));
    let opened = open(path, "report", deadline).with_context(context)?;
    let written = write_opened(&opened, line, deadline);
    if written.is_err()
        && opened.created
        && let Some(entry) = &opened.entry
    {
        entry.remove_if_holds(&opened.file);
    }
    written.with_context(context)
}

fn write_opened(opened: &Opened, line: &str, deadline: Instant) -> io::Result<()> {
    let mut file = &opened.file;
    if let Some(entry) = &opened.entry {
        match replace(entry, &opened.st, line) {
            Ok(()) => return Ok(()),
            // A directory pynish may not write (or rename in) holding a file it may: no atomic rename, but a
            // report.
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => file.set_len(0)?,
            Err(e) => return Err(e),
        }
    } else if is(&opened.st, SFlag::S_IFREG) {
        if opened.through_fd {
            std::io::Seek::seek(&mut file, io::SeekFrom::End(0))?;
        } else {
            file.set_len(0)?; // a link's target the kernel did not place
        }
    }
    write_by(file, line.as_bytes(), deadline)
}

/// Writes all of `bytes` to a non-blocking `file`, waiting for room (a FIFO's reader) at most until `deadline`.
fn write_by(file: &File, bytes: &[u8], deadline: Instant) -> io::Result<()> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut file = file;
    let mut left = bytes;
    while !left.is_empty() {
        match file.write(left) {
            Ok(n) => left = &left[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let wait = deadline.saturating_duration_since(Instant::now());
                let wait = PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX);
                let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLOUT)];
                if poll(&mut fds, wait).map_err(io::Error::from)? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no reader took it within {PATIENCE:?} (a FIFO without a reader?)"),
                    ));
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A temporary file next to `entry` (named `.pynish-KIND.PID.NANOS.N`), with the mode (and, for root, the owner)
/// of the file `old` it will replace; returns its name and the file.
fn make_temp(entry: &Entry, old: &FileStat, kind: &str) -> io::Result<(String, File)> {
    let dir = &entry.dir.fd;
    let (temp, fd) = (0..100)
        .find_map(|attempt| {
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            let temp = format!(".pynish-{kind}.{}.{}.{attempt}", std::process::id(), nanos.subsec_nanos());
            let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            match openat(dir, temp.as_str(), flags, new_mode()) {
                Err(Errno::EEXIST) => None,
                result => Some(result.map(|fd| (temp, fd))),
            }
        })
        .unwrap_or(Err(Errno::EEXIST))?;
    let file = File::from(fd);
    if nix::unistd::geteuid().is_root() {
        // Before the mode: chown clears set-id bits. Best effort: a file system may refuse owners.
        let _ = nix::unistd::fchown(&file, Some(old.st_uid.into()), Some(old.st_gid.into()));
    }
    match nix::sys::stat::fchmod(&file, Mode::from_bits_truncate(old.st_mode & 0o7777)) {
        Ok(()) => Ok((temp, file)),
        Err(e) => {
            remove_temp(entry, &temp);
            Err(e.into())
        }
    }
}

fn remove_temp(entry: &Entry, temp: &str) {
    let _ = nix::unistd::unlinkat(&entry.dir.fd, temp, nix::unistd::UnlinkatFlags::NoRemoveDir);
}

/// A temporary file next to `entry`, with the mode (and, for root, the owner) of the file `old` it replaces,
/// renamed over it in the same open directory.
fn replace(entry: &Entry, old: &FileStat, line: &str) -> io::Result<()> {
    let (temp, mut file) = make_temp(entry, old, "report")?;
    let written = (|| {
        file.write_all(line.as_bytes())?;
        file.sync_all()?;
        nix::fcntl::renameat(&entry.dir.fd, temp.as_str(), &entry.dir.fd, entry.name.as_os_str())?;
        Ok(())
    })();
    if written.is_err() {
        remove_temp(entry, &temp);
    }
    written
}

/// An `--output` destination, opened before the run: where the tree's output goes while it runs.
pub struct Output {
    /// What the bytes are written to (blocking): a temporary file next to a regular FILE, renamed over it by
    /// `commit`; else FILE itself (a FIFO, a device, someone's open file reached through `/proc`, appended to).
    pub file: File,
    /// The temporary file's name and where it goes, for a regular FILE.
    temp: Option<(Entry, String)>,
    /// FILE as opened, and its entry when pynish made it: removed again if the run never commits.
    made: Option<(Entry, File)>,
}

/// Opens the output `path` by the module's rules (as `--report`'s, at the start instead of the end), waiting at
/// most `PATIENCE` for a FIFO's reader. A regular file is replaced atomically once the run is over: a reader
/// sees the old file or the whole new one, never half of it.
pub fn open_output(path: &Path) -> Result<Output> {
    let context = || format!("cannot write the output to {}", shown(path));
    let opened = open(path, "output", Instant::now() + PATIENCE).with_context(context)?;
    set_flags(&opened.file, |flags| flags & !OFlag::O_NONBLOCK).with_context(context)?;
    let Opened { file, st, entry, created, through_fd } = opened;
    let Some(entry) = entry else {
        if through_fd {
            set_flags(&file, |flags| flags | OFlag::O_APPEND).with_context(context)?;
        } else if is(&st, SFlag::S_IFREG) {
            file.set_len(0).with_context(context)?; // a link's target the kernel did not place
        }
        return Ok(Output { file, temp: None, made: None });
    };
    match make_temp(&entry, &st, "output") {
        Ok((temp, into)) => {
            let made = match entry.dir.try_clone() {
                Ok(dir) if created => Some((Entry { dir, name: entry.name.clone() }, file)),
                _ => None,
            };
            Ok(Output { file: into, temp: Some((entry, temp)), made })
        }
        // A directory pynish may not write (or rename in) holding a file it may: no atomic rename, but output.
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            file.set_len(0).with_context(context)?;
            Ok(Output { file, temp: None, made: None })
        }
        Err(e) => Err(e).with_context(context),
    }
}

impl Output {
    /// Once the run is over and everything is written: renames the temporary file over FILE.
    pub fn commit(mut self) -> io::Result<()> {
        self.made = None;
        let Some((entry, temp)) = self.temp.take() else { return Ok(()) };
        let renamed = nix::fcntl::renameat(&entry.dir.fd, temp.as_str(), &entry.dir.fd, entry.name.as_os_str());
        if renamed.is_err() {
            remove_temp(&entry, &temp);
        }
        Ok(renamed?)
    }
}

impl Drop for Output {
    /// A run that never committed (refused, or pynish failing) leaves neither its temporary file nor a FILE it
    /// made.
    fn drop(&mut self) {
        if let Some((entry, temp)) = self.temp.take() {
            remove_temp(&entry, &temp);
        }
        if let Some((entry, file)) = self.made.take() {
            entry.remove_if_holds(&file);
        }
    }
}
