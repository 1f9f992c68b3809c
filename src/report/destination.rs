//! Where `--report PATH` puts the report, by what the path is: the same rules before the run (to refuse a bad
//! path before anything runs) and after it (to write).
//!
//! - A regular file, or nothing yet: written atomically, a temporary file in the same directory renamed over
//!   the path, so that a reader sees the old report or the new one, never half of one. A new file gets
//!   0666 & ~umask, as a shell's `>` would make it; a replaced file keeps its mode (and, for root, its owner).
//! - A symbolic link is followed and its target gets the report, by the same rules; the link stays. A link to
//!   nothing (dangling) gets its target made, as `>` does.
//! - A FIFO, a device, or whatever a `/proc/PID/fd/N` link (`/dev/stdout`) leads to is opened and written in
//!   place: renaming over them would put a regular file where a device node or a pipe was (as root, over
//!   `/dev/null` for everyone). A regular file reached only that way is appended to, so that the command's own
//!   output already in it stays. A `/proc` fd link to a descriptor that is not open is refused before the run.
//! - Writing in place waits at most `IN_PLACE_PATIENCE`: a FIFO that no reader opens (or one that stops reading)
//!   would otherwise hold pynish forever once the tree is gone, and the caller would never get the verdict's exit
//!   status. The report is then lost, and said on stderr.

use anyhow::{Context, Result, bail};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How many symbolic links in a row are followed, as the kernel's own limit (ELOOP).
const MAX_LINKS: usize = 40;
/// How long a write in place (a FIFO's reader) may take before pynish gives up the report and exits.
const IN_PLACE_PATIENCE: Duration = Duration::from_secs(5);

/// How a report reaches its destination.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Destination {
    /// A regular file, or none yet, at this path (links resolved): a temporary file renamed over it.
    Replace(PathBuf),
    /// Opened and written in place; `append` for a regular file reached through a `/proc` fd link.
    InPlace { append: bool },
}

/// The directory `path` is in.
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Whether the link `path` is one of `/proc`'s (`/proc/PID/fd/N`, reached as `/dev/stdout` or `/dev/fd/N` too),
/// which names an open file rather than a path.
#[cfg(target_os = "linux")]
fn in_proc(path: &Path) -> bool {
    use nix::sys::statfs::{PROC_SUPER_MAGIC, statfs};
    statfs(parent(path)).is_ok_and(|fs| fs.filesystem_type() == PROC_SUPER_MAGIC)
}

#[cfg(not(target_os = "linux"))]
fn in_proc(_path: &Path) -> bool {
    false
}

/// `path` with every symbolic link at its end followed, as text (a link's target is relative to its directory);
/// None when a link of `/proc` is on the way, whose target is an open file, not a path.
fn follow(path: &Path) -> io::Result<Option<PathBuf>> {
    let mut path = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                if in_proc(&path) {
                    return Ok(None);
                }
                let target = fs::read_link(&path)?;
                path = if target.is_absolute() { target } else { parent(&path).join(target) };
            }
            _ => return Ok(Some(path)),
        }
    }
    Err(io::Error::from_raw_os_error(nix::libc::ELOOP))
}

fn destination(path: &Path) -> Result<Destination> {
    let shown = path.display();
    match fs::metadata(path) {
        Ok(meta) if meta.is_dir() => bail!("report file {shown} is a directory"),
        Ok(meta) if meta.is_file() => {
            // The file the links name as text, if it is the one the kernel reaches. Through a `/proc` fd link it
            // is an open file (stdout redirected to a file, say), which must keep what was written to it.
            let real = follow(path).with_context(|| format!("cannot follow the links of {shown}"))?;
            Ok(match real {
                Some(real) if fs::metadata(&real).is_ok_and(|r| (r.dev(), r.ino()) == (meta.dev(), meta.ino())) => {
                    Destination::Replace(real)
                }
                _ => Destination::InPlace { append: true },
            })
        }
        Ok(_) => Ok(Destination::InPlace { append: false }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // Nothing there yet, or a link to nothing: the file is made where the links lead.
            let real = follow(path)
                .with_context(|| format!("cannot follow the links of {shown}"))?
                .filter(|real| !in_proc(real))
                .with_context(|| format!("report file {shown} names a descriptor that is not open"))?;
            let dir = parent(&real);
            let meta =
                fs::metadata(dir).with_context(|| format!("report directory {} is not usable", dir.display()))?;
            if !meta.is_dir() {
                bail!("report directory {} is not a directory", dir.display());
            }
            Ok(Destination::Replace(real))
        }
        Err(e) => Err(e).with_context(|| format!("report file {shown} is not usable")),
    }
}

/// Refuses, before the run, a report path that cannot take a report (a directory, a missing directory). Opens
/// nothing: a FIFO would block until its reader comes.
pub fn check(path: &Path) -> Result<()> {
    destination(path).map(|_| ())
}

/// Writes `line` (one JSON report and its newline) to `path`, by the rules of the module docs.
pub fn write(path: &Path, line: &str) -> Result<()> {
    let context = || format!("cannot write the report to {}", path.display());
    match destination(path)? {
        Destination::Replace(real) => match replace(&real, line) {
            // A directory pynish may not write, holding a file it may: no atomic rename, but a report.
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied && real.is_file() => {
                in_place(&real, line, false).with_context(context)
            }
            result => result.with_context(context),
        },
        Destination::InPlace { append } => in_place_bounded(path, line, append).with_context(context),
    }
}

/// Whether `a` and `b` lead to the same regular file, existing or not (links followed), so that `--report` and
/// `--timeline` cannot name one file in two ways (the report, renamed over it at the end, would erase the
/// timeline). A FIFO or a device (`/dev/stdout` on a pipe) can take both.
pub fn same_file(a: &Path, b: &Path) -> bool {
    if let (Ok(a), Ok(b)) = (fs::metadata(a), fs::metadata(b)) {
        return a.is_file() && (a.dev(), a.ino()) == (b.dev(), b.ino());
    }
    // One does not exist yet: compare where each would be made, its real directory and its name.
    let made_at = |path: &Path| {
        let real = follow(path).ok()??;
        Some((fs::canonicalize(parent(&real)).ok()?, real.file_name()?.to_os_string()))
    };
    made_at(a).is_some_and(|a| Some(a) == made_at(b))
}

/// `in_place` on a thread, waited for at most `IN_PLACE_PATIENCE`. A thread rather than O_NONBLOCK: opening a
/// FIFO has no readiness to wait on, and its write can block too. A thread left blocked ends with pynish.
fn in_place_bounded(path: &Path, line: &str, append: bool) -> io::Result<()> {
    let (done, result) = std::sync::mpsc::sync_channel(1);
    let (path, line) = (path.to_path_buf(), line.to_string());
    std::thread::Builder::new().name("report".into()).spawn(move || {
        let _ = done.send(in_place(&path, &line, append));
    })?;
    result.recv_timeout(IN_PLACE_PATIENCE).unwrap_or_else(|_| {
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no reader took it within {IN_PLACE_PATIENCE:?} (a FIFO without a reader?)"),
        ))
    })
}

/// A temporary file next to `real`, with the mode (and owner) of the file it replaces, renamed over it.
fn replace(real: &Path, line: &str) -> io::Result<()> {
    let old = fs::metadata(real).ok();
    let mut file = tempfile::Builder::new()
        .prefix(".pynish-report")
        // open(2) applies the umask: a new report gets 0666 & ~umask.
        .permissions(fs::Permissions::from_mode(0o666))
        .tempfile_in(parent(real))?;
    if let Some(old) = &old {
        if nix::unistd::geteuid().is_root() {
            // Before the mode: chown clears set-id bits. Best effort: a file system may refuse owners.
            let _ = std::os::unix::fs::fchown(file.as_file(), Some(old.uid()), Some(old.gid()));
        }
        file.as_file().set_permissions(fs::Permissions::from_mode(old.mode() & 0o7777))?;
    }
    file.write_all(line.as_bytes())?;
    file.as_file().sync_all()?;
    file.persist(real).map_err(|e| e.error)?;
    Ok(())
}

/// Opens `path` for writing as it is (no O_TRUNC on a FIFO or a device, where it means nothing or harm), and
/// writes `line` in one go.
fn in_place(path: &Path, line: &str, append: bool) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).custom_flags(nix::libc::O_NOCTTY);
    if append {
        options.append(true);
    } else if path.is_file() {
        options.truncate(true);
    }
    let mut file: File = options.open(path)?;
    file.write_all(line.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_by_kind() {
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str| dir.path().join(name);
        fs::write(at("file"), "old").unwrap();
        std::os::unix::fs::symlink("file", at("link")).unwrap();
        std::os::unix::fs::symlink("link", at("link2")).unwrap();
        std::os::unix::fs::symlink("sub/new", at("dangling")).unwrap();
        std::os::unix::fs::symlink("nowhere/new", at("dangling-nowhere")).unwrap();
        std::os::unix::fs::symlink("loop", at("loop")).unwrap();
        fs::create_dir(at("sub")).unwrap();
        nix::unistd::mkfifo(&at("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();

        assert_eq!(destination(&at("file")).unwrap(), Destination::Replace(at("file")));
        assert_eq!(destination(&at("link2")).unwrap(), Destination::Replace(at("file")));
        assert_eq!(destination(&at("new")).unwrap(), Destination::Replace(at("new")));
        assert_eq!(destination(&at("dangling")).unwrap(), Destination::Replace(at("sub/new")));
        assert_eq!(destination(&at("fifo")).unwrap(), Destination::InPlace { append: false });
        assert_eq!(destination(Path::new("/proc/self/fd/0")).ok().map(|_| ()), Some(()));
        let error = |name: &str| format!("{:#}", destination(&at(name)).unwrap_err());
        assert!(error("sub").contains("is a directory"), "{}", error("sub"));
        assert!(error("dangling-nowhere").contains("is not usable"), "{}", error("dangling-nowhere"));
        assert!(error("loop").contains("symbolic links"), "{}", error("loop"));
    }

    #[test]
    fn an_fd_link_to_a_regular_file_is_appended_to() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        fs::write(&path, "the command's output\n").unwrap();
        let file = File::open(&path).unwrap();
        use std::os::fd::AsRawFd;
        let link = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        assert_eq!(destination(&link).unwrap(), Destination::InPlace { append: true });
        write(&link, "{}\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "the command's output\n{}\n");
    }
}
