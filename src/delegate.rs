//! `--delegate`: on cgroup v2 without a group this user may write, run pynish again inside a systemd user scope
//! with a delegated subtree (`systemd-run --user --scope -p Delegate=yes`), where the cgroup2 backend works
//! unprivileged.
//!
//! The scope runs pynish itself, with the same arguments, marked by `PYNISH_DELEGATED` in its environment so that
//! it does not re-run again: inside, pynish takes whatever backend it finds there. Where a cgroup2 group can
//! already be made, with a backend other than auto/cgroup2, or under auto without a memory or process limit (auto then
//! takes proc, see `tree::select`), `--delegate` changes nothing.

use crate::limits::Limits;
use crate::settings::Settings;
use crate::tree::BackendChoice;
use crate::tree::cgroup::v2::V2Tree;
use anyhow::{Context, Result, bail};
use std::ffi::{OsStr, OsString};
use std::os::unix::process::CommandExt;
use std::path::Path;

/// Set in the environment of the pynish that runs inside the scope.
pub const MARK: &str = "PYNISH_DELEGATED";

/// The command line that runs `pynish ARGS...` in a delegated scope.
fn scope_argv(systemd_run: &Path, pynish: &Path, args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut argv: Vec<OsString> =
        ["--user", "--scope", "--quiet", "-p", "Delegate=yes", "--"].iter().map(OsString::from).collect();
    argv.insert(0, systemd_run.as_os_str().to_owned());
    argv.push(pynish.as_os_str().to_owned());
    argv.extend(args);
    argv
}

/// Whether the machine's cgroup v2 hierarchy offers the controllers a delegated scope would pass on.
fn v2_controllers_offered() -> bool {
    let Ok(found) = crate::tree::cgroup::Discovery::from_proc() else { return false };
    let Some((mount, _)) = &found.v2 else { return false };
    let offered = std::fs::read_to_string(mount.mount_point.join("cgroup.controllers")).unwrap_or_default();
    ["memory", "pids"].iter().all(|c| offered.split_whitespace().any(|o| o == *c))
}

/// Whether `systemd-run --user` can reach this user's service manager (its private socket or the session bus).
fn user_manager_reachable() -> bool {
    std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|dir| {
        let dir = Path::new(&dir);
        dir.join("systemd/private").exists() || dir.join("bus").exists()
    })
}

/// Re-runs pynish in a delegated scope when `--delegate` asks for it and it would give pynish a cgroup2 group;
/// returns (and pynish goes on here) when there is nothing to do.
pub fn maybe_rerun(settings: &Settings, limits: &Limits) -> Result<()> {
    if !settings.delegate
        || !matches!(settings.backend, BackendChoice::Auto | BackendChoice::Cgroup2)
        || (settings.backend == BackendChoice::Auto && crate::tree::group_needed_for(limits).is_none())
        || std::env::var_os(MARK).is_some()
        || !v2_controllers_offered()
        || !user_manager_reachable()
        || V2Tree::open(limits).is_ok()
    {
        return Ok(());
    }
    let systemd_run = crate::spawn::resolve(OsStr::new("systemd-run"))
        .map_err(|_| anyhow::anyhow!("--delegate needs systemd-run, which is not on PATH"))?;
    let pynish = std::env::current_exe().context("--delegate cannot find pynish's own executable")?;
    let argv = scope_argv(&systemd_run, &pynish, std::env::args_os().skip(1));
    let mut command = std::process::Command::new(&argv[0]);
    command.args(&argv[1..]).env(MARK, "1");
    // SAFETY: runs just before execve, in this process (exec does not fork), and only closes descriptors and
    // resets the mask and SIGPIPE: the pynish run again sees the caller's state, to hand it on to the command.
    unsafe {
        command.pre_exec(|| {
            crate::inherit::restore_in_child();
            Ok(())
        });
    }
    let error = command.exec();
    bail!("--delegate cannot run {}: {error}", systemd_run.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_runs_pynish_with_the_same_arguments() {
        let args = ["--delegate", "--memory", "1GB", "--", "make", "-j4"].map(OsString::from);
        let argv = scope_argv(Path::new("/usr/bin/systemd-run"), Path::new("/usr/bin/pynish"), args);
        let shown: Vec<&str> = argv.iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            shown,
            [
                "/usr/bin/systemd-run",
                "--user",
                "--scope",
                "--quiet",
                "-p",
                "Delegate=yes",
                "--",
                "/usr/bin/pynish",
                "--delegate",
                "--memory",
                "1GB",
                "--",
                "make",
                "-j4"
            ]
        );
    }
}
