//! Whether `/proc` shows pynish's own pid namespace, and what can still be read from it when it does not.
//!
//! A pid namespace started without a `/proc` of its own (`unshare --pid --fork` without `--mount-proc`, some
//! sandboxes and CI runners) keeps the `/proc` of the namespace it came from. There `/proc/<n>` is the process
//! numbered `n` in *that* namespace, not pynish's member numbered `n`: pynish at pid 2 would read the host's
//! pid 2 (a kernel thread) and its children. `/proc/self` still resolves to pynish itself, under its number in
//! `/proc`'s namespace, so `/proc/self/...` (mountinfo, cgroup, ns/pid, stat) stays pynish's own; only numbered
//! paths mislead.
//!
//! The check: `/proc/self` must name `getpid()`, and `NSpid` in `/proc/self/status` must hold one number (more
//! mean `/proc` belongs to an ancestor namespace and the numbers merely coincide). Under an ancestor's `/proc`
//! every number read there is in that one namespace, so a walk from `/proc/self` is consistent, and `NSpid`/
//! `NSpgid` of a member give its numbers in pynish's namespace, which signals need. A `/proc` where `/proc/self`
//! does not resolve (none mounted, or one of a namespace pynish is not in) shows nothing of the tree at all.

use std::sync::OnceLock;

/// How `/proc` relates to pynish's pid namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    /// `/proc` belongs to pynish's own pid namespace.
    Own,
    /// `/proc` belongs to an ancestor namespace, where pynish is `me`; a process's number in pynish's namespace
    /// is field `depth` of its `NSpid`.
    Ancestor { me: i32, depth: usize },
    /// `/proc/self` does not resolve.
    Blind,
}

/// `/proc`'s relation to pynish's pid namespace, found once (it cannot change during a run).
pub fn view() -> &'static View {
    static VIEW: OnceLock<View> = OnceLock::new();
    VIEW.get_or_init(|| detect(std::process::id() as i32))
}

/// Whether `/proc/<pid>` paths mean pynish's own pids.
pub fn is_own() -> bool {
    *view() == View::Own
}

/// The inode number of the initial pid namespace (PROC_PID_INIT_INO, fixed since Linux 3.8): it has no ancestor
/// whose `/proc` could be mounted here.
const INITIAL_PID_NAMESPACE: u64 = 0xEFFF_FFFC;

fn detect(own: i32) -> View {
    let Some(me) = std::fs::read_link("/proc/self").ok().and_then(|p| p.to_str()?.parse::<i32>().ok()) else {
        return View::Blind;
    };
    if me == own && pid_namespace() == Some(INITIAL_PID_NAMESPACE) {
        return View::Own; // the common case, without reading /proc/self/status (tens of microseconds)
    }
    // Kernels before 4.1 have no NSpid: then the number alone decides.
    let depth = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| ns_field(&status, "NSpid:").map(|ids| ids.len().saturating_sub(1)))
        .unwrap_or(0);
    if me == own && depth == 0 { View::Own } else { View::Ancestor { me, depth } }
}

/// The numbers of a `NSpid:`-style line of `/proc/PID/status`, outermost namespace first.
fn ns_field(status: &str, key: &str) -> Option<Vec<i32>> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_ascii_whitespace().map(|n| n.parse().ok()).collect()
}

/// The pid and process group, in pynish's namespace, of the process `/proc` (an ancestor's) numbers `pid`.
pub fn translate(pid: i32, depth: usize) -> Option<(i32, i32)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let own = *ns_field(&status, "NSpid:")?.get(depth)?;
    let group = *ns_field(&status, "NSpgid:")?.get(depth)?;
    Some((own, group))
}

/// Why `/proc/<pid>` cannot be trusted here, in words for an error message; None when it can.
pub fn foreign_reason() -> Option<String> {
    match view() {
        View::Own => None,
        View::Ancestor { me, .. } => Some(format!(
            "/proc belongs to another pid namespace (it shows pynish as pid {me}, pynish is pid {} in its own)",
            std::process::id()
        )),
        View::Blind => {
            Some("/proc/self does not resolve (no /proc, or one of a pid namespace pynish is not in)".into())
        }
    }
}

/// The inode number of pynish's pid namespace (`/proc/self/ns/pid` reads `pid:[4026531836]`), which tells pid
/// namespaces apart on one machine; None where the kernel does not show it.
pub fn pid_namespace() -> Option<u64> {
    static NAMESPACE: OnceLock<Option<u64>> = OnceLock::new();
    *NAMESPACE.get_or_init(|| {
        let link = std::fs::read_link("/proc/self/ns/pid").ok()?;
        link.to_str()?.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_runs_with_its_own_proc() {
        // The unit tests run in the namespace whose /proc is mounted; the foreign cases run in tests/namespaces.rs.
        assert_eq!(detect(std::process::id() as i32), View::Own);
        assert!(matches!(detect(std::process::id() as i32 + 1), View::Ancestor { .. }));
        use std::os::unix::fs::MetadataExt;
        let inode = std::fs::metadata("/proc/self/ns/pid").unwrap().ino();
        assert_eq!(pid_namespace(), Some(inode));
    }

    #[test]
    fn ns_fields_outermost_first() {
        let status = "Name:\tsh\nNSpid:\t12007\t3\nNSpgid:\t12000\t1\n";
        assert_eq!(ns_field(status, "NSpid:"), Some(vec![12007, 3]));
        assert_eq!(ns_field(status, "NSpgid:"), Some(vec![12000, 1]));
        assert_eq!(ns_field(status, "NSsid:"), None);
        let me = std::process::id() as i32;
        let (pid, group) = translate(me, 0).expect("own status");
        assert_eq!(pid, me);
        assert_eq!(group, nix::unistd::getpgrp().as_raw());
    }
}
