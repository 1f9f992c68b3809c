//! Where `--report PATH` and `--timeline PATH` write, checked before the run and opened when written: one set of
//! rules for both flags. A leaf: it knows paths, files and the kernel, nothing of settings, reports or timelines.
//!
//! **The kernel resolves the path, never pynish.** pynish may run as root while another user owns the directory
//! the path is in (`/tmp`): a link read by hand and then followed is a race that user can win (root's report
//! renamed over a root-owned file elsewhere). So the directory is opened once, and the last name is opened in it
//! with `O_CREAT`, exactly as a shell's `>` opens it: the kernel's `fs.protected_symlinks`, `protected_fifos`
//! and `protected_regular` apply as they would to the shell.
//!
//! **A shared sticky directory** (sticky and writable by group or others: `/tmp`) gets the kernel's rules
//! whatever the sysctls say: a symbolic link, FIFO or regular file there that belongs neither to pynish's user
//! nor to the directory's owner is refused, with one line, before the run (and again when written, since it
//! may appear meanwhile). The last name is first opened with `O_NOFOLLOW`, so a link is only ever followed once
//! it is known to be trusted (its owner's, whom the sticky bit lets alone replace it).
//!
//! **What is written where:**
//! - A regular file, or nothing yet: the report is written atomically, a temporary file in the file's own
//!   directory renamed over it, so a reader sees the old report or the new one, never half of one. A new file
//!   gets 0666 & ~umask, as `>` would make it; a replaced one keeps its mode (and, for root, its owner). A link
//!   is followed (by the kernel) and its target replaced, found where the kernel says the opened file is and
//!   checked to be that same file; the link stays. A link to nothing gets its target made, as `>` does.
//! - A FIFO, a device, or whatever a `/proc/PID/fd/N` link (`/dev/stdout`) leads to is written in place:
//!   renaming over them would put a regular file where a device node or a pipe was. A regular file reached
//!   through such a link is appended to, so that the command's output already in it stays. A `/proc` fd link to
//!   a descriptor that is not open (or that was closed when pynish started) is refused before the run.
//! - Nothing waits longer than `PATIENCE` on a FIFO: opening is retried without blocking until a reader comes,
//!   and the report's write waits for room at most until the same deadline. A timeline that no reader takes in
//!   that time refuses the run; a report is then lost, and said on stderr.

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, fstatat};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long pynish waits for a FIFO's reader (to open it, or to make room), once.
pub const PATIENCE: Duration = Duration::from_secs(5);
/// How often a FIFO without a reader is tried again.
const RETRY: Duration = Duration::from_millis(20);
/// How many symbolic links in a row the checks follow by hand, as the kernel's own limit (ELOOP). Used only to
/// explain a refusal before the run (a dangling link's missing directory, a closed descriptor), never to write.
const MAX_LINKS: usize = 40;

/// The directory `path` is in.
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// A directory, open (it stays the one the path named, whatever is renamed later), and what is known of it.
struct Dir {
    fd: OwnedFd,
    /// The owner, when the directory is sticky and writable by others: the only user besides pynish's whose
    /// files, FIFOs and links there are trusted.
    shared_owner: Option<u32>,
}

impl Dir {
    fn open(dir: &Path) -> nix::Result<Dir> {
        #[cfg(target_os = "linux")]
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        #[cfg(not(target_os = "linux"))]
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let fd = nix::fcntl::open(dir, flags, Mode::empty())?;
        let st = fstat(&fd)?;
        let shared = st.st_mode & libc::S_ISVTX != 0 && st.st_mode & (libc::S_IWOTH | libc::S_IWGRP) != 0;
        Ok(Dir { fd, shared_owner: shared.then_some(st.st_uid) })
    }

    /// The entry `name`, not followed.
    fn lstat(&self, name: &OsStr) -> nix::Result<FileStat> {
        fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW)
    }

    /// Whether `name` here is the file `st`.
    fn holds(&self, name: &OsStr, st: &FileStat) -> bool {
        self.lstat(name).is_ok_and(|e| (e.st_dev, e.st_ino) == (st.st_dev, st.st_ino))
    }
}

/// The kind of `st` (as said in messages) when it is another user's link, FIFO or regular file in the shared
/// sticky directory `dir`: one that belongs neither to pynish's user nor to the directory's owner.
fn foreign(dir: &Dir, st: &FileStat) -> Option<&'static str> {
    let (owner, kind) = (dir.shared_owner?, guarded_kind(st)?);
    (st.st_uid != owner && st.st_uid != nix::unistd::geteuid().as_raw()).then_some(kind)
}

/// What kind of entry `st` is, as said in messages; None for what the sticky rule does not cover.
fn guarded_kind(st: &FileStat) -> Option<&'static str> {
    match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
        SFlag::S_IFLNK => Some("symbolic link"),
        SFlag::S_IFIFO => Some("FIFO"),
        SFlag::S_IFREG => Some("regular file"),
        _ => None,
    }
}

fn is(st: &FileStat, kind: SFlag) -> bool {
    st.st_mode & SFlag::S_IFMT.bits() == kind.bits()
}

/// One destination: the flag's name for messages, the path as given, its directory and last name.
struct Place<'a> {
    what: &'static str,
    path: &'a Path,
    dir: Dir,
    name: OsString,
}

impl<'a> Place<'a> {
    fn new(path: &'a Path, what: &'static str) -> Result<Place<'a>> {
        let shown = path.display();
        // `.`, `..`, `/`: a directory by its very name.
        let Some(name) = path.file_name() else { bail!("{what} file {shown} is a directory") };
        let dir_path = parent(path);
        let dir = Dir::open(dir_path).map_err(|e| match e {
            Errno::ENOTDIR => anyhow::anyhow!("{what} directory {} is not a directory", dir_path.display()),
            e => anyhow::anyhow!("{what} directory {} is not usable: {}", dir_path.display(), e.desc()),
        })?;
        Ok(Place { what, path, dir, name: name.to_os_string() })
    }

    /// The one-line refusal of another user's link, FIFO or file in a shared sticky directory.
    fn refuse_foreign(&self, st: &FileStat) -> Result<()> {
        match foreign(&self.dir, st) {
            Some(kind) => bail!(
                "{} file {} is a {kind} of another user (uid {}) in the shared sticky directory {}: refused, as \
                 the kernel's protected_* rules refuse it to a shell's `>`; remove it or choose another path",
                self.what,
                self.path.display(),
                st.st_uid,
                parent(self.path).display()
            ),
            None => Ok(()),
        }
    }

    fn not_open(&self) -> anyhow::Error {
        anyhow::anyhow!("{} file {} names a descriptor that is not open", self.what, self.path.display())
    }

    fn failed(&self, e: Errno) -> anyhow::Error {
        let shown = self.path.display();
        match e {
            Errno::EISDIR => anyhow::anyhow!("{} file {shown} is a directory", self.what),
            Errno::ELOOP => anyhow::anyhow!("cannot follow the links of {shown}: {}", e.desc()),
            e => anyhow::anyhow!("{} file {shown} is not usable: {}", self.what, e.desc()),
        }
    }
}

/// Whether `dir` is in `/proc`, whose `fd/N` links name open files rather than paths.
#[cfg(target_os = "linux")]
fn in_proc(dir: &impl AsFd) -> bool {
    use nix::sys::statfs::{PROC_SUPER_MAGIC, fstatfs};
    fstatfs(dir).is_ok_and(|fs| fs.filesystem_type() == PROC_SUPER_MAGIC)
}

#[cfg(not(target_os = "linux"))]
fn in_proc(_dir: &impl AsFd) -> bool {
    false
}

/// The links at the end of `path` followed by hand, as text. Only for the checks (explaining a refusal, telling
/// two names of one file apart): what is written where is always the kernel's resolution. Stops at a `/proc`
/// link: `Err(Some(N))` for `.../fd/N`, whose target is an open file, not a path.
fn follow(path: &Path) -> Result<PathBuf, Option<i32>> {
    let mut path = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                if Dir::open(parent(&path)).is_ok_and(|dir| in_proc(&dir.fd)) {
                    let fd = path.file_name().and_then(|n| n.to_str()?.parse().ok());
                    let in_fd = parent(&path).file_name().is_some_and(|n| n == "fd");
                    return Err(fd.filter(|_| in_fd));
                }
                let target = fs::read_link(&path).map_err(|_| None)?;
                path = if target.is_absolute() { target } else { parent(&path).join(target) };
            }
            _ => return Ok(path),
        }
    }
    Err(None)
}

/// Whether pynish's descriptor `fd` is open, and was open when pynish started (Rust's runtime puts `/dev/null`
/// on a closed 0, 1 or 2: a report sent there would go nowhere, silently).
fn descriptor_open(fd: i32) -> bool {
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

/// Refuses, before the run, a path that cannot take `what` ("report", "timeline"): a directory, a missing
/// directory, another user's entry in a shared sticky directory, a closed descriptor's `/proc` link. Makes and
/// opens nothing: a FIFO would block until its reader comes, and a reader must not see an empty report early.
pub fn check(path: &Path, what: &'static str) -> Result<()> {
    let place = Place::new(path, what)?;
    let st = match place.dir.lstat(&place.name) {
        Ok(st) => st,
        Err(Errno::ENOENT) if in_proc(&place.dir.fd) => return Err(place.not_open()),
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(place.failed(e)),
    };
    place.refuse_foreign(&st)?;
    if is(&st, SFlag::S_IFDIR) {
        return Err(place.failed(Errno::EISDIR));
    }
    if !is(&st, SFlag::S_IFLNK) {
        return Ok(());
    }
    let target = match follow(path) {
        Err(Some(fd)) if !descriptor_open(fd) => return Err(place.not_open()),
        Err(None) => None,
        Err(Some(_)) => None,
        Ok(target) => Some(target),
    };
    match fstatat(&place.dir.fd, place.name.as_os_str(), AtFlags::empty()) {
        Ok(st) if is(&st, SFlag::S_IFDIR) => Err(place.failed(Errno::EISDIR)),
        Ok(_) => Ok(()),
        // A link to nothing: its target is made, if its directory is there.
        Err(Errno::ENOENT) => match target {
            Some(target) => {
                let dir = parent(&target);
                match fs::metadata(dir) {
                    Ok(meta) if meta.is_dir() => Ok(()),
                    Ok(_) => bail!("{what} directory {} is not a directory", dir.display()),
                    Err(e) => bail!("{what} directory {} is not usable: {e}", dir.display()),
                }
            }
            None => Err(place.not_open()),
        },
        Err(e) => Err(place.failed(e)),
    }
}

/// Whether `a` and `b` lead to the same regular file, existing or not (links followed), so that `--report` and
/// `--timeline` cannot name one file in two ways (the report, renamed over it at the end, would erase the
/// timeline). A FIFO or a device (`/dev/stdout` on a pipe) can take both.
pub fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    if let (Ok(a), Ok(b)) = (fs::metadata(a), fs::metadata(b)) {
        return a.is_file() && (a.dev(), a.ino()) == (b.dev(), b.ino());
    }
    // One does not exist yet: compare where each would be made, its real directory and its name.
    let made_at = |path: &Path| {
        let real = follow(path).ok()?;
        Some((fs::canonicalize(parent(&real)).ok()?, real.file_name()?.to_os_string()))
    };
    made_at(a).is_some_and(|a| Some(a) == made_at(b))
}

/// A directory entry, by its open directory and its name: where a file is replaced, or removed again.
struct Entry {
    dir: Dir,
    name: OsString,
}

impl Entry {
    /// Refuses the target `st` of the link `place`, found here, by the rule of `Place::refuse_foreign`.
    fn refuse_foreign(&self, place: &Place, st: &FileStat) -> Result<()> {
        match foreign(&self.dir, st) {
            Some(kind) => bail!(
                "{} file {} leads to a {kind} of another user (uid {}) in a shared sticky directory: refused, as \
                 the kernel's protected_* rules refuse it to a shell's `>`",
                place.what,
                place.path.display(),
                st.st_uid
            ),
            None => Ok(()),
        }
    }

    /// Removes the entry if it still names `file` (a file pynish made), never what replaced it.
    fn remove_if_holds(&self, file: &File) {
        if let Ok(st) = fstat(file)
            && self.dir.holds(&self.name, &st)
        {
            let _ = nix::unistd::unlinkat(&self.dir.fd, self.name.as_os_str(), nix::unistd::UnlinkatFlags::NoRemoveDir);
        }
    }
}

/// A destination opened for writing, as the kernel resolved it.
pub struct Opened {
    file: File,
    st: FileStat,
    /// Where the file is, when it is a regular file found there: what an atomic replace renames over.
    entry: Option<Entry>,
    /// pynish made the file (and may remove it again if the run is refused).
    created: bool,
    /// Reached through a `/proc` fd link: someone's open file, appended to and never replaced.
    through_fd: bool,
}

/// The open flags of every attempt: write only, never block (a FIFO without a reader), never become the
/// controlling terminal, never leak into the command.
fn base_flags() -> OFlag {
    OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC
}

/// `0666`, less the umask (applied by open(2)), as a shell's `>` makes a file.
fn new_mode() -> Mode {
    Mode::from_bits_truncate(0o666)
}

/// The link `name` in `dir`, followed by the kernel with `O_CREAT`; also whether a `/proc` fd link was on the
/// way (`RESOLVE_NO_MAGICLINKS` refuses it; the plain open then follows it).
#[cfg(target_os = "linux")]
fn open_following(dir: &Dir, name: &OsStr) -> nix::Result<(OwnedFd, bool)> {
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

#[cfg(not(target_os = "linux"))]
fn open_following(dir: &Dir, name: &OsStr) -> nix::Result<(OwnedFd, bool)> {
    openat(&dir.fd, name, base_flags() | OFlag::O_CREAT, new_mode()).map(|fd| (fd, false))
}

/// Where the kernel says the opened regular file is (its `/proc/self/fd` link), if that entry is still this
/// very file: a link's target is replaced there, and nowhere else.
#[cfg(target_os = "linux")]
fn locate(fd: &OwnedFd, st: &FileStat) -> Option<Entry> {
    use std::os::fd::AsRawFd;
    let at = fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
    let name = at.file_name()?.to_os_string();
    let dir = Dir::open(parent(&at)).ok()?;
    dir.holds(&name, st).then_some(Entry { dir, name })
}

#[cfg(not(target_os = "linux"))]
fn locate(_fd: &OwnedFd, _st: &FileStat) -> Option<Entry> {
    None
}

/// One attempt at opening `place`, or why it is tried again.
fn try_open(place: Place) -> Result<Result<Opened, Again>> {
    let (dir, name) = (&place.dir, place.name.as_os_str());
    // Nothing there: made here, by pynish (O_EXCL says so), never through a link.
    match openat(&dir.fd, name, base_flags() | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW, new_mode()) {
        Ok(fd) => {
            let st = fstat(&fd).map_err(|e| place.failed(e))?;
            let entry = Some(Entry { dir: place.dir, name: place.name });
            return Ok(Ok(Opened { file: fd.into(), st, entry, created: true, through_fd: false }));
        }
        Err(Errno::EEXIST) => {}
        Err(Errno::ENOENT) if in_proc(&dir.fd) => return Err(place.not_open()),
        Err(e) => return Err(place.failed(e)),
    }
    // There, and not a link: opened as it is (with O_CREAT, so that the kernel's protected_* rules apply).
    match openat(&dir.fd, name, base_flags() | OFlag::O_CREAT | OFlag::O_NOFOLLOW, new_mode()) {
        Ok(fd) => {
            let st = fstat(&fd).map_err(|e| place.failed(e))?;
            place.refuse_foreign(&st)?;
            let entry = is(&st, SFlag::S_IFREG).then(|| Entry { dir: place.dir, name: place.name });
            return Ok(Ok(Opened { file: fd.into(), st, entry, created: false, through_fd: false }));
        }
        Err(Errno::ENXIO) => {
            let st = dir.lstat(name).map_err(|e| place.failed(e))?;
            place.refuse_foreign(&st)?;
            return if is(&st, SFlag::S_IFIFO) { Ok(Err(Again::Fifo(place))) } else { Err(place.failed(Errno::ENXIO)) };
        }
        // O_NOFOLLOW on a link: it is one (checked below), or it was removed meanwhile (tried again).
        Err(Errno::ELOOP | Errno::ENOENT) => {}
        // The kernel's sticky rule refusing another user's entry (a link, in a race, once the check is past):
        // said as the check says it.
        Err(Errno::EACCES) => {
            return match dir.lstat(name) {
                Ok(st) => place.refuse_foreign(&st).and(Err(place.failed(Errno::EACCES))),
                Err(_) => Ok(Err(Again::Raced(place))), // removed meanwhile
            };
        }
        Err(e) => return Err(place.failed(e)),
    }
    // A link: trusted only if pynish's user or the sticky directory's owner made it; then the kernel follows it.
    let link = match dir.lstat(name) {
        Ok(st) => st,
        Err(Errno::ENOENT) => return Ok(Err(Again::Raced(place))), // removed meanwhile
        Err(e) => return Err(place.failed(e)),
    };
    place.refuse_foreign(&link)?;
    if !is(&link, SFlag::S_IFLNK) {
        return Ok(Err(Again::Raced(place))); // replaced meanwhile
    }
    let made = fstatat(&dir.fd, name, AtFlags::empty()) == Err(Errno::ENOENT);
    match open_following(dir, name) {
        Ok((fd, through_fd)) => {
            let st = fstat(&fd).map_err(|e| place.failed(e))?;
            let entry = if through_fd { None } else { locate(&fd, &st) };
            // Where the link leads is held to the same rule, in its own directory.
            if let Some(entry) = &entry {
                entry.refuse_foreign(&place, &st)?;
            }
            let entry = entry.filter(|_| is(&st, SFlag::S_IFREG));
            Ok(Ok(Opened { file: fd.into(), st, entry, created: made && !through_fd, through_fd }))
        }
        Err(Errno::ENXIO) => {
            let st = fstatat(&dir.fd, name, AtFlags::empty()).map_err(|e| place.failed(e))?;
            if is(&st, SFlag::S_IFIFO) { Ok(Err(Again::Fifo(place))) } else { Err(place.failed(Errno::ENXIO)) }
        }
        Err(Errno::ENOENT) if matches!(follow(place.path), Err(Some(_))) => Err(place.not_open()),
        Err(e) => Err(place.failed(e)),
    }
}

/// Why an attempt at opening is tried again.
enum Again<'a> {
    /// A FIFO without a reader yet: tried again until the deadline.
    Fifo(Place<'a>),
    /// The entry changed between two steps (someone making and removing it): tried again at once, a bounded
    /// number of times.
    Raced(Place<'a>),
}

/// How many times in a row an entry may change under pynish before it gives up.
const MAX_RACES: usize = 1000;

/// Opens `path` for `what` by the module's rules, waiting at most until `deadline` for a FIFO's reader.
fn open(path: &Path, what: &'static str, deadline: Instant) -> Result<Opened> {
    let mut place = Place::new(path, what)?;
    let mut races = 0;
    loop {
        place = match try_open(place)? {
            Ok(opened) => return Ok(opened),
            Err(Again::Raced(place)) if races < MAX_RACES => {
                races += 1;
                place
            }
            Err(Again::Raced(_)) => bail!("{what} file {} kept changing while pynish opened it", path.display()),
            Err(Again::Fifo(place)) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    bail!(
                        "{what} file {}: no reader took it within {PATIENCE:?} (a FIFO without a reader?)",
                        path.display()
                    );
                }
                std::thread::sleep(left.min(RETRY));
                place
            }
        };
    }
}

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
            .with_context(|| format!("cannot write the timeline to {}", path.display()))?;
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
    let context = || format!("cannot write the report to {}", path.display());
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

/// A temporary file next to `entry`, with the mode (and, for root, the owner) of the file `old` it replaces,
/// renamed over it in the same open directory.
fn replace(entry: &Entry, old: &FileStat, line: &str) -> io::Result<()> {
    let dir = &entry.dir.fd;
    let (temp, fd) = (0..100)
        .find_map(|attempt| {
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            let temp = format!(".pynish-report.{}.{}.{attempt}", std::process::id(), nanos.subsec_nanos());
            let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            match openat(dir, temp.as_str(), flags, new_mode()) {
                Err(Errno::EEXIST) => None,
                result => Some(result.map(|fd| (temp, fd))),
            }
        })
        .unwrap_or(Err(Errno::EEXIST))?;
    let written = (|| {
        let mut file = File::from(fd);
        if nix::unistd::geteuid().is_root() {
            // Before the mode: chown clears set-id bits. Best effort: a file system may refuse owners.
            let _ = nix::unistd::fchown(&file, Some(old.st_uid.into()), Some(old.st_gid.into()));
        }
        nix::sys::stat::fchmod(&file, Mode::from_bits_truncate(old.st_mode & 0o7777))?;
        file.write_all(line.as_bytes())?;
        file.sync_all()?;
        nix::fcntl::renameat(dir, temp.as_str(), dir, entry.name.as_os_str())?;
        Ok(())
    })();
    if written.is_err() {
        let _ = nix::unistd::unlinkat(dir, temp.as_str(), nix::unistd::UnlinkatFlags::NoRemoveDir);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(path: &Path) -> String {
        format!("{:#}", check(path, "report").unwrap_err())
    }

    #[test]
    fn checks_by_kind() {
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str| dir.path().join(name);
        fs::write(at("file"), "old").unwrap();
        std::os::unix::fs::symlink("file", at("link")).unwrap();
        std::os::unix::fs::symlink("link", at("link2")).unwrap();
        std::os::unix::fs::symlink("sub/new", at("dangling")).unwrap();
        std::os::unix::fs::symlink("nowhere/new", at("dangling-nowhere")).unwrap();
        std::os::unix::fs::symlink("loop", at("loop")).unwrap();
        std::os::unix::fs::symlink("sub", at("to-dir")).unwrap();
        fs::create_dir(at("sub")).unwrap();
        nix::unistd::mkfifo(&at("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
        for ok in ["file", "link2", "new", "dangling", "fifo"] {
            check(&at(ok), "report").unwrap_or_else(|e| panic!("{ok}: {e:#}"));
        }
        check(Path::new("/proc/self/fd/0"), "report").unwrap();
        assert!(error(&at("sub")).contains("is a directory"), "{}", error(&at("sub")));
        assert!(error(&at("to-dir")).contains("is a directory"), "{}", error(&at("to-dir")));
        assert!(error(&at(".")).contains("is a directory"), "{}", error(&at(".")));
        assert!(error(&at("dangling-nowhere")).contains("is not usable"), "{}", error(&at("dangling-nowhere")));
        assert!(error(&at("loop")).contains("symbolic links"), "{}", error(&at("loop")));
        assert!(error(&at("missing/new")).contains("directory"), "{}", error(&at("missing/new")));
        assert!(error(Path::new("/proc/self/fd/987")).contains("not open"));
    }

    #[test]
    fn a_report_replaces_a_links_target_and_appends_to_an_open_file() {
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str| dir.path().join(name);
        fs::write(at("file"), "old").unwrap();
        std::os::unix::fs::symlink("file", at("link")).unwrap();
        write_report(&at("link"), "{}\n").unwrap();
        assert_eq!(fs::read_to_string(at("file")).unwrap(), "{}\n");
        assert!(fs::symlink_metadata(at("link")).unwrap().file_type().is_symlink());

        fs::write(at("out"), "the command's output\n").unwrap();
        let file = File::open(at("out")).unwrap();
        use std::os::fd::AsRawFd;
        let link = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        write_report(&link, "{}\n").unwrap();
        assert_eq!(fs::read_to_string(at("out")).unwrap(), "the command's output\n{}\n");
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(left.len(), 3, "no temporary file left: {left:?}");
    }
}
