//! `--backend auto` makes a kernel group only where an asked limit needs one: a memory (resident) or process
//! limit. Without one it takes proc, which holds wall and CPU time exactly and starts without a group's set-up
//! cost; `-v` and `pynish check` say which backend and why.

use crate::util::*;

/// The backend auto takes for a memory or process limit here: the best cgroup backend usable, else proc.
fn group_backend() -> &'static str {
    let usable = backends();
    let best = ["cgroup2", "cgroup1"].into_iter().find(|b| usable.contains(b));
    best.unwrap_or_else(|| {
        eprintln!("SKIP the cgroup half: no cgroup backend is usable here, auto falls back to proc");
        "proc"
    })
}

#[test]
fn auto_takes_proc_when_no_limit_needs_a_group() {
    let cases: [&[&str]; 4] =
        [&[], &["--wall-time", "10s"], &["--cpu-time", "10s"], &["--memory", "1GB", "--memory-kind", "virtual"]];
    for limits in cases {
        let out = pynish().args(["--json", "-v"]).args(limits).args(["--", "true"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(code(&out), 0, "{limits:?}: {stderr}");
        let report = report(&out);
        assert_eq!(report["backend"], "proc", "{limits:?}: {report}");
        assert!(
            stderr.contains("pynish: backend proc (no memory or process limit: wall and CPU time are exact with proc"),
            "{limits:?}: -v does not say why: {stderr}"
        );
    }
}

#[test]
fn auto_takes_a_group_for_a_memory_or_process_limit() {
    let expected = group_backend();
    for (limits, kind, named) in
        [(&["--memory", "1GB"][..], "memory", "--memory"), (&["--processes", "100"][..], "processes", "--processes")]
    {
        let out = pynish().args(["--json", "-v"]).args(limits).args(["--", "true"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(code(&out), 0, "{limits:?}: {stderr}");
        let report = report(&out);
        assert_eq!(report["backend"], expected, "{limits:?}: {report}");
        assert_eq!(report["enforcement"][kind], expected, "{limits:?}: {report}");
        if expected != "proc" {
            let why =
                format!("pynish: backend {expected} ({named} asked for: a cgroup lets the kernel hold it exactly");
            assert!(stderr.contains(&why), "{limits:?}: -v does not say why: {stderr}");
        }
    }
}

#[test]
fn check_says_which_backend_auto_takes_for_which_limits() {
    let expected = group_backend();
    let out = pynish().args(["check", "--json"]).output().unwrap();
    let findings: serde_json::Value = serde_json::from_slice(&out.stdout).expect("check --json prints JSON");
    assert_eq!(findings["auto"], expected, "{findings}");
    let choice = findings["auto_choice"].as_array().expect("auto_choice");
    assert_eq!(choice.len(), 2, "{findings}");
    assert_eq!(choice[0]["backend"], "proc", "{findings}");
    assert!(choice[0]["limits"].as_str().unwrap().contains("--wall-time"), "{findings}");
    assert_eq!(choice[1]["backend"], expected, "{findings}");
    assert!(choice[1]["limits"].as_str().unwrap().contains("--memory"), "{findings}");
    assert!(choice.iter().all(|c| !c["why"].as_str().unwrap().is_empty()), "{findings}");

    let text = String::from_utf8_lossy(&pynish().arg("check").output().unwrap().stdout).into_owned();
    assert!(text.contains(&format!("--backend auto uses {expected} for --memory/--processes, else proc")), "{text}");
    assert!(text.contains("What --backend auto picks:"), "{text}");
}
