//! `pynish check`: which limits this machine and user can enforce, with which backend, and why the better
//! backends cannot be used here (with the command that would make them usable, where there is one).
//!
//! Each cgroup backend is tried for real, as a run would use it: its group is made (with no limits) and removed
//! again, so the answer includes permissions, delegation and the no-internal-process rule, not only what is
//! mounted; so is a group with a CPU quota, for `--cpu-quota`. Nothing else is changed: no stale group is swept,
//! no process is started.

use crate::limits::Limits;
use crate::tree::cgroup::{Discovery, v1::V1Tree, v2};
use anyhow::Result;
use serde::Serialize;
use std::path::Path;

#[derive(Debug, Serialize)]
struct Backend {
    name: &'static str,
    usable: bool,
    /// Where its groups go, or why it cannot be used.
    detail: String,
}

#[derive(Debug, Serialize)]
struct Limit {
    name: &'static str,
    /// The backend or mechanism that holds it (`timer`, `cgroup2`, `cgroup1`, `proc`), if any.
    enforced_by: Option<&'static str>,
    how: String,
}

#[derive(Debug, Serialize)]
struct AutoChoice {
    /// The limits asked for.
    limits: &'static str,
    backend: Option<&'static str>,
    why: String,
    /// What this choice gives up against a group, when it is proc (README, "What a run on proc gives up").
    gives_up: Option<&'static str>,
}

/// What auto's proc gives up against a group, said where it is chosen.
const PROC_GIVES_UP: &str = "a pynish killed by SIGKILL leaves the command's deeper descendants (a setsid daemon) \
     running, where a group's members are killed by the next run that uses a group; ask for one with --backend \
     cgroup2/cgroup1 where that matters";

#[derive(Debug, Serialize)]
struct Findings {
    uid: u32,
    kernel: String,
    /// The backend `--backend auto` picks for a run with a memory or process limit (a kernel group, where one can be
    /// made). A run without either takes `proc` (see `auto_choice`).
    auto: Option<&'static str>,
    /// Which backend `auto` picks for which limits, and why.
    auto_choice: Vec<AutoChoice>,
    backends: Vec<Backend>,
    limits: Vec<Limit>,
    hints: Vec<String>,
    /// Every limit can be enforced, at least by the fallback.
    ok: bool,
    /// The harness limits (soft limits, per-process rlimits, CPU pinning and quota): how each is held here, or
    /// `enforced_by` null where it cannot be. `ok` does not count them: a run that does not ask needs none.
    harness_limits: Vec<Limit>,
}

/// Runs the check and prints the findings; the exit code is 0 when every limit can be enforced.
pub fn run(json: bool) -> Result<u8> {
    use std::io::Write;
    let findings = gather();
    let text = if json { format!("{}\n", serde_json::to_string(&findings)?) } else { render(&findings) };
    // A reader that goes away early (`pynish check | head -1`) is not an error worth a panic.
    let _ = std::io::stdout().write_all(text.as_bytes());
    Ok(if findings.ok { 0 } else { 1 })
}

/// One line for `--version`: which backends work here, and which `auto` takes.
pub fn summary() -> String {
    let findings = gather();
    let each: Vec<String> =
        findings.backends.iter().map(|b| format!("{} {}", b.name, if b.usable { "yes" } else { "no" })).collect();
    format!(
        "backends: {}; auto uses {} for --memory/--processes, else proc",
        each.join(", "),
        findings.auto.unwrap_or("none")
    )
}

fn try_v2() -> Backend {
    let (usable, detail) = match v2::V2Tree::open(&Limits::default()) {
        Ok(tree) => (true, format!("{} (made and removed again)", tree.placement())),
        Err(e) => (false, format!("{e:#}")),
    };
    Backend { name: "cgroup2", usable, detail }
}

fn try_v1() -> Backend {
    let (usable, detail) = match V1Tree::open(&Limits::default()) {
        Ok(tree) => (true, format!("{} (made and removed again)", tree.placement())),
        Err(e) => (false, format!("{e:#}")),
    };
    Backend { name: "cgroup1", usable, detail }
}

fn try_proc() -> Backend {
    let readable = std::fs::read_to_string("/proc/self/stat").is_ok();
    let detail = if let (true, Some(reason)) = (readable, crate::procfs::foreign_reason()) {
        format!("holds only the wall time and --memory-kind virtual here (it refuses the other limits): {reason}")
    } else if readable {
        "samples the tree from /proc; the kernel holds only rlimits (RLIMIT_CPU as a backstop, RLIMIT_AS for \
         --memory-kind virtual)"
            .to_string()
    } else {
        "/proc is not readable".to_string()
    };
    let blind = *crate::procfs::view() == crate::procfs::View::Blind;
    Backend { name: "proc", usable: readable && !blind, detail }
}

/// How each limit is held when it is asked for with `--backend auto`: wall and CPU time alone by the timer and
/// proc, memory and processes by `group` (the cgroup backend auto takes for them, or proc without one). CPU time
/// asked together with memory or processes is read from the same group.
fn limits(group: Option<&'static str>) -> Vec<Limit> {
    let cgroup = group.filter(|b| b.starts_with("cgroup"));
    let proc_cpu = "alone or with --wall-time: proc, CPU of the tree from the live members' CPU clocks plus what \
                    pynish reaped, exact to the sample; RLIMIT_CPU (whole seconds, per process) as a backstop";
    let cpu = match cgroup {
        Some(_) => format!(
            "{proc_cpu}; with --memory or --processes: the group's CPU counter (all members, ended ones included)"
        ),
        None => proc_cpu.to_string(),
    };
    let (memory, processes) = match (cgroup, group) {
        (Some(_), _) => (
            "the kernel holds the group to the limit (page cache and tmpfs files such as /dev/shm included; the \
             proc backend does not count tmpfs files) and reports its OOM kill",
            "the kernel refuses forks beyond the group's pids.max (threads count as tasks)",
        ),
        (None, Some(_)) => (
            "the tree's memory, sampled (resident sets, confirmed with proportional set sizes, so that a shared \
             page counts once): a fast allocator can overshoot between two samples; tmpfs files (/dev/shm) do not \
             count (--memory-kind virtual: RLIMIT_AS per process)",
            "processes (unreaped ones too) counted by sampling: a fast fork bomb can overshoot between two samples (RLIMIT_NPROC \
             counts every process of the user, so pynish does not use it)",
        ),
        (None, None) => ("no backend", "no backend"),
    };
    vec![
        Limit { name: "wall_time", enforced_by: Some("timer"), how: "pynish's own clock, with every backend".into() },
        Limit { name: "cpu_time", enforced_by: group.map(|_| "proc"), how: cpu },
        Limit { name: "memory", enforced_by: group, how: memory.into() },
        Limit { name: "processes", enforced_by: group, how: processes.into() },
    ]
}

/// Which backend auto takes for which limits, and why; `group` is the backend it takes for memory or processes.
fn auto_choice(group: Option<&'static str>) -> Vec<AutoChoice> {
    let group_why = match group {
        Some("proc") | None => "memory or process limit, but no cgroup can be made here (see above): pynish samples \
                                the tree from /proc"
            .to_string(),
        Some(backend) => format!(
            "memory or process limit: the kernel holds them exactly in a group, worth the group's set-up at each \
             run (on cgroup v1 joining a group waits for an RCU grace period, about 12 ms when runs are apart), so \
             {backend} is used for these only"
        ),
    };
    vec![
        match (crate::procfs::foreign_reason(), group) {
            (Some(reason), Some(backend)) if backend.starts_with("cgroup") => AutoChoice {
                limits: "none, --wall-time, --cpu-time, --memory-kind virtual",
                backend: Some(backend),
                why: format!("proc could not sample the tree here ({reason}), so a group holds these too"),
                gives_up: None,
            },
            _ => AutoChoice {
                limits: "none, --wall-time, --cpu-time, --memory-kind virtual",
                backend: Some("proc"),
                why: crate::tree::NO_GROUP_NEEDED.to_string(),
                gives_up: Some(PROC_GIVES_UP),
            },
        },
        AutoChoice {
            limits: "--memory, --processes",
            backend: group,
            why: group_why,
            gives_up: matches!(group, Some("proc") | None).then_some(PROC_GIVES_UP),
        },
    ]
}

/// A cgroup2 mount whose root offers the controllers a run needs (so only permissions stand in the way).
fn v2_has_controllers(found: &Discovery) -> bool {
    let Some((mount, _)) = &found.v2 else { return false };
    let text = std::fs::read_to_string(Path::new(&mount.mount_point).join("cgroup.controllers")).unwrap_or_default();
    v2::CONTROLLERS.iter().all(|c| text.split_ascii_whitespace().any(|w| w == *c))
}

fn gather() -> Findings {
    let uid = nix::unistd::getuid().as_raw();
    let kernel =
        std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default();
    let backends = vec![try_v2(), try_v1(), try_proc()];
    let auto = backends.iter().find(|b| b.usable).map(|b| b.name);
    let mut hints = Vec::new();
    let found = Discovery::from_proc().unwrap_or_default();
    if !backends[0].usable && uid != 0 && v2_has_controllers(&found) {
        hints.push(format!("cgroup v2 is mounted but no group is delegated to uid {uid}: {}", v2::DELEGATE_HINT));
    }
    if auto == Some("proc") && uid != 0 && found.v1_with("memory").is_some() {
        hints.push(format!(
            "cgroup v1 groups can be made by root only, or by a user given write access to pynish's groups in the \
             memory, cpuacct and pids hierarchies (e.g. `cgcreate -a {uid} -t {uid} -g memory,cpuacct,pids:/NAME`, \
             then run pynish inside them)"
        ));
    }
    let mut limits = limits(auto);
    if auto == Some("proc")
        && let Some(reason) = crate::procfs::foreign_reason()
    {
        for limit in limits.iter_mut().filter(|l| l.name != "wall_time") {
            limit.enforced_by = None;
            limit.how = format!("refused by the proc backend here (--memory-kind virtual aside): {reason}");
        }
    }
    let ok = auto.is_some() && limits.iter().all(|l| l.enforced_by.is_some());
    let harness_limits = harness_limits(crate::procfs::foreign_reason(), try_cpu_quota());
    Findings { uid, kernel, auto, auto_choice: auto_choice(auto), limits, backends, hints, ok, harness_limits }
}

/// Which backend can hold a CPU quota here, tried for real: a group with `cpu.max` (v2) or a cpu group with
/// `cpu.cfs_quota_us` (v1) made and removed again, as `--backend auto` would try them; else why neither can.
fn try_cpu_quota() -> Result<&'static str, String> {
    let limits = Limits { cpu_quota: Some(1.0), ..Limits::default() };
    let v2 = match v2::V2Tree::open(&limits) {
        Ok(_) => return Ok("cgroup2"),
        Err(e) => format!("{e:#}"),
    };
    match V1Tree::open(&limits) {
        Ok(_) => Ok("cgroup1"),
        Err(v1) => Err(format!("cgroup2: {v2}; cgroup1: {v1:#}")),
    }
}

/// How the harness limits are held here: the soft limits by pynish's own clock and samples (`proc_refused`: why
/// proc cannot sample this tree, where it cannot), the rlimits by the kernel (with the hard limit each is bounded
/// by), `--cpus` by the affinity mask (with the CPUs allowed), `--cpu-quota` by `quota` (a backend, or why none).
fn harness_limits(proc_refused: Option<String>, quota: Result<&'static str, String>) -> Vec<Limit> {
    let warn = "once, to every member, with --soft-signal (SIGURG unless asked); the run goes on";
    let sampled = |name, what: &str| match &proc_refused {
        None => Limit { name, enforced_by: Some("proc"), how: format!("{what}: {warn}") },
        Some(reason) => Limit {
            name,
            enforced_by: None,
            how: format!("proc cannot sample this tree ({reason}); with a cgroup limit beside it, its group: {what}"),
        },
    };
    let mut out = vec![
        Limit { name: "soft_wall_time", enforced_by: Some("timer"), how: format!("pynish's own clock: {warn}") },
        sampled("soft_cpu_time", "counted as --cpu-time is, as precisely (with --cpu-time, by its backend)"),
        sampled(
            "soft_memory",
            "resident memory, sampled as --memory is (with --memory, by its backend); nothing throttled",
        ),
    ];
    let every = crate::limits::Rlimits { open_files: Some(0), file_size: Some(0), stack: Some(0), core_size: Some(0) };
    for ((resource, flag, _), name) in every.asked().into_iter().zip(["open_files", "file_size", "stack", "core_size"])
    {
        let bound = match nix::sys::resource::getrlimit(resource) {
            Ok((_, hard)) if hard == nix::libc::RLIM_INFINITY => "no hard limit here".to_string(),
            Ok((soft, hard)) => {
                // Tried for real, as a run's check does: raised by one and set back at once.
                use nix::sys::resource::setrlimit;
                let raised = setrlimit(resource, soft, hard + 1).is_ok();
                let _ = setrlimit(resource, soft, hard);
                let raise = if raised { "pynish may raise it" } else { "a value above it is refused" };
                format!("hard limit {hard} here ({raise})")
            }
            Err(_) => "hard limit unknown".to_string(),
        };
        let how = format!("{flag}: set before exec, inherited by every member; {bound}");
        out.push(Limit { name, enforced_by: Some("rlimit"), how });
    }
    out.push(match crate::limits::allowed_cpus() {
        Ok(cpus) => Limit {
            name: "cpus",
            enforced_by: Some("affinity"),
            how: format!(
                "sched_setaffinity before exec, inherited (on the cgroup1 backend a cpuset group too, so that no \
                 member widens its own); CPUs allowed here: {}",
                crate::units::format_cpu_list(&cpus)
            ),
        },
        Err(e) => Limit { name: "cpus", enforced_by: None, how: format!("{e:#}") },
    });
    out.push(match quota {
        Ok(backend) => Limit {
            name: "cpu_quota",
            enforced_by: Some(backend),
            how: format!("{backend}'s CPU controller throttles the tree (a CFS quota per 100 ms period; tried here)"),
        },
        Err(why) => {
            Limit { name: "cpu_quota", enforced_by: None, how: format!("{}: {why}", crate::tree::CPU_QUOTA_NEEDS) }
        }
    });
    out
}

fn render(findings: &Findings) -> String {
    let mut out = format!("pynish check: uid {}, Linux {}\n\nBackends", findings.uid, findings.kernel);
    match findings.auto {
        Some(auto) => out += &format!(" (--backend auto uses {auto} for --memory/--processes, else proc):\n"),
        None => out += " (none usable):\n",
    }
    for backend in &findings.backends {
        let usable = if backend.usable { "yes" } else { "no" };
        out += &format!("  {:<8} {usable:<4} {}\n", backend.name, backend.detail);
    }
    out += "\nWhat --backend auto picks:\n";
    for choice in &findings.auto_choice {
        out += &format!("  {:<8} for {}: {}\n", choice.backend.unwrap_or("-"), choice.limits, choice.why);
        if let Some(gives_up) = choice.gives_up {
            out += &format!("           gives up: {gives_up}\n");
        }
    }
    out += "\nLimits (as held with --backend auto):\n";
    for limit in &findings.limits {
        out += &format!("  {:<10} {:<8} {}\n", limit.name, limit.enforced_by.unwrap_or("-"), limit.how);
    }
    out += "\nHarness limits (soft limits, per-process rlimits, CPUs), each when asked:\n";
    for limit in &findings.harness_limits {
        out += &format!("  {:<14} {:<8} {}\n", limit.name, limit.enforced_by.unwrap_or("-"), limit.how);
    }
    for hint in &findings.hints {
        out += &format!("\nHint: {hint}\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_fallback_enforces_every_limit() {
        let limits = limits(Some("proc"));
        assert_eq!(limits.len(), 4);
        assert!(limits.iter().all(|l| l.enforced_by.is_some()));
        assert_eq!(limits[2].enforced_by, Some("proc"));
    }

    #[test]
    fn text_names_auto_and_hints() {
        let findings = Findings {
            uid: 1000,
            kernel: "6.1.0".into(),
            auto: Some("proc"),
            auto_choice: auto_choice(Some("proc")),
            backends: vec![Backend { name: "cgroup2", usable: false, detail: "not delegated".into() }],
            limits: limits(Some("proc")),
            hints: vec![format!("cgroup v2 ...: {}", v2::DELEGATE_HINT)],
            ok: true,
            harness_limits: harness_limits(None, Err("no cpu controller".into())),
        };
        let text = render(&findings);
        assert!(text.contains("--backend auto uses proc"), "{text}");
        assert!(
            text.contains("proc     for none, --wall-time, --cpu-time, --memory-kind virtual: no memory"),
            "{text}"
        );
        assert!(text.contains("systemd-run --user --scope -p Delegate=yes"), "{text}");
        assert!(text.contains("cgroup2  no"), "{text}");
        assert!(text.contains("open_files     rlimit"), "{text}");
        assert!(text.contains("cpu_quota      -        --cpu-quota needs a kernel CPU controller"), "{text}");
    }

    #[test]
    fn harness_limits_say_what_holds_each() {
        let found = harness_limits(None, Ok("cgroup1"));
        let names: Vec<_> = found.iter().map(|l| l.name).collect();
        let all = ["soft_wall_time", "soft_cpu_time", "soft_memory", "open_files", "file_size", "stack", "core_size"];
        assert_eq!(names[..7], all);
        assert_eq!(names[7..], ["cpus", "cpu_quota"]);
        assert_eq!(found[8].enforced_by, Some("cgroup1"));
        let foreign = harness_limits(Some("a /proc of another namespace".into()), Err("none".into()));
        assert_eq!(foreign[0].enforced_by, Some("timer"), "the clock needs no /proc");
        assert_eq!((foreign[1].enforced_by, foreign[2].enforced_by, foreign[8].enforced_by), (None, None, None));
    }
}
