//! Where `--report PATH` and `--timeline PATH` write, checked before the run and opened when written: one set of
//! rules for both flags. A leaf: it knows paths, files and the kernel, nothing of settings, reports or timelines.
//!
//! **No path read back and followed.** pynish may run as root while another user owns the directory the path
//! is in (`/tmp`): a link read by hand and then followed by its text is a race that user can win (root's report
//! renamed over a root-owned file elsewhere). So the directory is opened once, one name at a time, each from the
//! descriptor of the one before, and the last name is opened in it with `O_CREAT`, exactly as a shell's `>`
//! opens it: the kernel's `fs.protected_symlinks`, `protected_fifos` and `protected_regular` apply as they
//! would to the shell.
//!
//! **A shared sticky directory** (sticky and writable by group or others: `/tmp`) gets the kernel's rules
//! whatever the sysctls say: a symbolic link, FIFO or regular file there that belongs neither to pynish's user
//! nor to the directory's owner is refused, with one line, before the run (and again when written, since it
//! may appear meanwhile). So is such a link on the way to the directory, and a regular file with more than one
//! name there (perhaps another user's hard link to a file elsewhere). A link, last name or on the way, is only
//! ever followed once it is known to be trusted (its owner's, whom the sticky bit lets alone replace it).
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

//!
//! The module's parts: this file holds the rules (which directory, which entry, whose) and the opening; `write`
//! writes what was opened (the atomic replace, the bounded FIFO write, the timeline's file); `fd` checks and
//! writes a descriptor passed by number (`--report-fd`); the platform's own calls (`/proc`, `openat2`) are in
//! `linux` (`other` stands in elsewhere).

mod fd;
#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as platform;
#[cfg(not(target_os = "linux"))]
mod other;
#[cfg(not(target_os = "linux"))]
use other as platform;
mod write;

use fd::descriptor_open;
pub use fd::{check_fd, write_fd};
use platform::{in_proc, locate, open_following};
pub use write::{Output, Timeline, open_output, open_timeline, write_report};

use anyhow::{Result, bail};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, fstatat};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long pynish waits for a FIFO's reader (to open it, or to make room), once.
pub const PATIENCE: Duration = Duration::from_secs(5);
/// How often a FIFO without a reader is tried again.
const RETRY: Duration = Duration::from_millis(20);
/// How many symbolic links in a row are followed by hand, as the kernel's own limit (ELOOP): by the directory
/// walk (from descriptors), and by the checks that explain a refusal before the run (a dangling link's missing
/// directory, a closed descriptor).
const MAX_LINKS: usize = 40;

/// A path as messages show it: on one line whatever its bytes, a newline or another control character escaped
/// (`\n`), so that a refusal stays the one line pynish promises.
pub struct Shown<'a>(&'a Path);

/// `path`, to be shown in a message (see `Shown`).
pub fn shown(path: &Path) -> Shown<'_> {
    Shown(path)
}

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write as _;
        for c in self.0.to_string_lossy().chars() {
            if c.is_control() { write!(f, "{}", c.escape_default())? } else { f.write_char(c)? }
        }
        Ok(())
    }
}

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

/// Why a directory could not be walked to.
enum Unwalked {
    Errno(Errno),
    /// Another user's symbolic link (owned by this uid) on the way, in a shared sticky directory.
    Foreign(u32),
}

impl From<Errno> for Unwalked {
    fn from(e: Errno) -> Self {
        Unwalked::Errno(e)
    }
}

impl Dir {
    fn from_fd(fd: OwnedFd) -> nix::Result<Dir> {
        let st = fstat(&fd)?;
        let shared = st.st_mode & libc::S_ISVTX != 0 && st.st_mode & (libc::S_IWOTH | libc::S_IWGRP) != 0;
        Ok(Dir { fd, shared_owner: shared.then_some(st.st_uid) })
    }

    /// The directory `dir`, resolved by the kernel in one go: for paths the kernel gave (no link of anyone's).
    fn open(dir: &Path) -> nix::Result<Dir> {
        Dir::from_fd(nix::fcntl::open(dir, platform::dir_flags(), Mode::empty())?)
    }

    /// The directory `dir` a destination is in, opened one name at a time, each from the directory before it, so
    /// that a symbolic link on the way is held to the sticky rule of the last name (another user's link in a
    /// shared sticky directory is refused, whatever `fs.protected_symlinks` says) before it is followed. A
    /// trusted link stays where it is (the sticky bit keeps others from replacing it) while its text is read.
    /// Links in `/proc` (`/proc/self`, `/dev/fd`) are the kernel's own, followed by it.
    fn walk(dir: &Path) -> Result<Dir, Unwalked> {
        use std::collections::VecDeque;
        use std::path::Component;
        let mut todo: VecDeque<OsString> = VecDeque::new();
        let push_front = |todo: &mut VecDeque<OsString>, path: &Path| {
            for part in path.components().rev() {
                todo.push_front(match part {
                    Component::RootDir => OsString::from("/"),
                    Component::Prefix(p) => p.as_os_str().to_os_string(),
                    other => other.as_os_str().to_os_string(),
                });
            }
        };
        push_front(&mut todo, dir);
        let mut cur = Dir::open(Path::new(if dir.is_absolute() { "/" } else { "." }))?;
        let mut links = 0;
        while let Some(name) = todo.pop_front() {
            if name == "/" {
                cur = Dir::open(Path::new("/"))?;
                continue;
            }
            if name == "." {
                continue;
            }
            let nofollow = if in_proc(&cur.fd) { OFlag::empty() } else { OFlag::O_NOFOLLOW };
            match openat(&cur.fd, name.as_os_str(), platform::dir_flags() | nofollow, Mode::empty()) {
                Ok(fd) => {
                    cur = Dir::from_fd(fd)?;
                    continue;
                }
                // O_NOFOLLOW on a link (with O_DIRECTORY, Linux says ENOTDIR).
                Err(Errno::ELOOP | Errno::ENOTDIR) => {}
                Err(e) => return Err(e.into()),
            }
            let st = cur.lstat(&name)?;
            if !is(&st, SFlag::S_IFLNK) {
                return Err(Errno::ENOTDIR.into());
            }
            if foreign(&cur, &st).is_some() {
                return Err(Unwalked::Foreign(st.st_uid));
            }
            links += 1;
            if links > MAX_LINKS {
                return Err(Errno::ELOOP.into());
            }
            let target = nix::fcntl::readlinkat(&cur.fd, name.as_os_str())?;
            push_front(&mut todo, Path::new(&target));
        }
        Ok(cur)
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

/// Whether `st` is a regular file with more than one name, in the shared sticky directory `dir`: a name there
/// may be another user's hard link to a file of pynish's user elsewhere (`fs.protected_hardlinks=0` lets anyone
/// make one), which a write in place would overwrite. Its owner cannot tell, so any such file is refused.
fn hard_linked(dir: &Dir, st: &FileStat) -> bool {
    dir.shared_owner.is_some() && is(st, SFlag::S_IFREG) && st.st_nlink > 1
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
        let named = shown(path);
        // `.`, `..`, `/`: a directory by its very name.
        let Some(name) = path.file_name() else { bail!("{what} file {named} is a directory") };
        // `out.json/`: a directory by its spelling, as the kernel reads it (`file_name` drops the slash).
        if std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()).ends_with(b"/") {
            bail!("{what} file {named} names a directory (it ends in `/`)");
        }
        let dir_path = parent(path);
        let dir = Dir::walk(dir_path).map_err(|e| match e {
            Unwalked::Errno(Errno::ENOTDIR) => {
                anyhow::anyhow!("{what} directory {} is not a directory", shown(dir_path))
            }
            Unwalked::Errno(e) => {
                anyhow::anyhow!("{what} directory {} is not usable: {}", shown(dir_path), e.desc())
            }
            Unwalked::Foreign(uid) => anyhow::anyhow!(
                "{what} directory {} goes through a symbolic link of another user (uid {uid}) in a shared sticky \
                 directory: refused, as the kernel's protected_symlinks refuses it to a shell's `>`; choose \
                 another path",
                shown(dir_path)
            ),
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
                shown(self.path),
                st.st_uid,
                shown(parent(self.path))
            ),
            None if hard_linked(&self.dir, st) => bail!(
                "{} file {} is a regular file with {} hard links in the shared sticky directory {}: refused, as \
                 one may be another user's link to a file elsewhere; remove it or choose another path",
                self.what,
                shown(self.path),
                st.st_nlink,
                shown(parent(self.path))
            ),
            None => Ok(()),
        }
    }

    /// Refuses, before the run, a file (or, for a new one, a directory) pynish's user may not write: the open at
    /// the end would be refused as a shell's `>` is before its command, and the report lost.
    fn may_write(&self, dir: &impl AsFd, path: &Path) -> Result<()> {
        use nix::unistd::{AccessFlags, faccessat};
        faccessat(dir, path, AccessFlags::W_OK, AtFlags::AT_EACCESS).map_err(|e| self.failed(e))
    }

    fn not_open(&self) -> anyhow::Error {
        anyhow::anyhow!("{} file {} names a descriptor that is not open", self.what, shown(self.path))
    }

    fn failed(&self, e: Errno) -> anyhow::Error {
        let shown = shown(self.path);
        match e {
            Errno::EISDIR => anyhow::anyhow!("{} file {shown} is a directory", self.what),
            Errno::ELOOP => anyhow::anyhow!("cannot follow the links of {shown}: {}", e.desc()),
            e => anyhow::anyhow!("{} file {shown} is not usable: {}", self.what, e.desc()),
        }
    }
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

/// Refuses, before the run, a path that cannot take `what` ("report", "timeline"): a directory, a missing
/// directory, another user's entry in a shared sticky directory, a closed descriptor's `/proc` link. Makes and
/// opens nothing: a FIFO would block until its reader comes, and a reader must not see an empty report early.
pub fn check(path: &Path, what: &'static str) -> Result<()> {
    let place = Place::new(path, what)?;
    let st = match place.dir.lstat(&place.name) {
        Ok(st) => st,
        Err(Errno::ENOENT) if in_proc(&place.dir.fd) => return Err(place.not_open()),
        Err(Errno::ENOENT) => return place.may_write(&place.dir.fd, Path::new(".")),
        Err(e) => return Err(place.failed(e)),
    };
    place.refuse_foreign(&st)?;
    if is(&st, SFlag::S_IFDIR) {
        return Err(place.failed(Errno::EISDIR));
    }
    if !is(&st, SFlag::S_IFLNK) {
        return place.may_write(&place.dir.fd, Path::new(&place.name));
    }
    let target = match follow(path) {
        Err(Some(fd)) if !descriptor_open(fd) => return Err(place.not_open()),
        Err(None) => None,
        Err(Some(_)) => None,
        Ok(target) => Some(target),
    };
    match fstatat(&place.dir.fd, place.name.as_os_str(), AtFlags::empty()) {
        Ok(st) if is(&st, SFlag::S_IFDIR) => Err(place.failed(Errno::EISDIR)),
        // A `/proc` fd link (`target` None) was checked open above: its description is written, not reopened.
        Ok(_) if target.is_some() => place.may_write(&place.dir.fd, Path::new(&place.name)),
        Ok(_) => Ok(()),
        // A link to nothing: its target is made, if its directory is there.
        Err(Errno::ENOENT) => match target {
            Some(target) => {
                let dir = parent(&target);
                match fs::metadata(dir) {
                    Ok(meta) if meta.is_dir() => place.may_write(&nix::fcntl::AT_FDCWD, dir),
                    Ok(_) => bail!("{what} directory {} is not a directory", shown(dir)),
                    Err(e) => bail!("{what} directory {} is not usable: {e}", shown(dir)),
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

impl Dir {
    fn try_clone(&self) -> io::Result<Dir> {
        Ok(Dir { fd: self.fd.try_clone()?, shared_owner: self.shared_owner })
    }
}

impl Entry {
    /// Refuses the target `st` of the link `place`, found here, by the rule of `Place::refuse_foreign`.
    fn refuse_foreign(&self, place: &Place, st: &FileStat) -> Result<()> {
        match foreign(&self.dir, st) {
            Some(kind) => bail!(
                "{} file {} leads to a {kind} of another user (uid {}) in a shared sticky directory: refused, as \
                 the kernel's protected_* rules refuse it to a shell's `>`",
                place.what,
                shown(place.path),
                st.st_uid
            ),
            None if hard_linked(&self.dir, st) => bail!(
                "{} file {} leads to a regular file with {} hard links in a shared sticky directory: refused, as \
                 one may be another user's link to a file elsewhere",
                place.what,
                shown(place.path),
                st.st_nlink
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
            Err(Again::Raced(_)) => bail!("{what} file {} kept changing while pynish opened it", shown(path)),
            Err(Again::Fifo(place)) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    bail!(
                        "{what} file {}: no reader took it within {PATIENCE:?} (a FIFO without a reader?)",
                        shown(path)
                    );
                }
                std::thread::sleep(left.min(RETRY));
                place
            }
        };
    }
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
