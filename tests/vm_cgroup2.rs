//! pynish's cgroup v2 backend against a real kernel: `tests/vm/run.sh` boots a
//! small qemu VM (software emulation) whose busybox initramfs runs the
//! scenarios of `tests/vm/init.sh` with the pynish binary built by cargo.
//!
//! Skipped (with a "SKIP: ..." message, not failed) when the machine lacks
//! qemu-system-x86_64, a kernel in /boot, a static busybox or a static libc,
//! or when PYNISH_SKIP_VM is set. On Debian:
//! `apt-get install qemu-system-x86 linux-image-cloud-amd64 busybox-static`.
//!
//! This is the only test in its binary, and cargo runs test binaries one after
//! another, so the VM does not compete with the other test files for the CPU.

use std::process::Command;

/// Every case init.sh must report as PASS.
const CASES: &[&str] = &[
    "memory",
    "processes",
    "daemon",
    "cpu_subsecond",
    "nonleaf",
    "unpriv_delegated",
    "unpriv_fallback",
    "timeline",
    "cost",
    "born",
    "cpu_quota",
    "oom_outside",
    "nested_memory",
    "nested_processes",
    "records",
    "io",
    "no_leftover_groups",
];

#[test]
fn cgroup2_backend_in_vm() {
    if std::env::var_os("PYNISH_SKIP_VM").is_some() {
        eprintln!("SKIP: PYNISH_SKIP_VM is set");
        return;
    }
    let bin = env!("CARGO_BIN_EXE_pynish");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vm/run.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg(bin)
        .env_remove("PYNISH_VM_CASES")
        .output()
        .expect("could not run bash tests/vm/run.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);

    match out.status.code() {
        Some(77) => {
            let reason = stdout.lines().find(|l| l.starts_with("SKIP:")).unwrap_or("SKIP: tests/vm/run.sh exited 77");
            eprintln!("cgroup2_backend_in_vm: {reason}");
            return;
        }
        Some(0) => {}
        other => panic!(
            "tests/vm/run.sh failed ({}):\n{stdout}\n{stderr}",
            other.map_or_else(|| "killed by a signal".to_string(), |c| format!("exit {c}"))
        ),
    }

    let lines: Vec<&str> = stdout.lines().map(|l| l.trim_end_matches('\r')).collect();
    let missing: Vec<&str> = CASES
        .iter()
        .copied()
        .filter(|case| {
            let prefix = format!("PYNISH-VM-CASE {case} PASS");
            !lines.iter().any(|l| *l == prefix || l.starts_with(&format!("{prefix} ")))
        })
        .collect();
    assert!(missing.is_empty(), "cases without a PASS line: {missing:?}\n{stdout}\n{stderr}");
    // The cost case's figures (ratios to GNU timeout inside the VM), for README's Benchmark section.
    for line in lines.iter().filter(|l| l.starts_with("PYNISH-VM-CASE cost ")) {
        eprintln!("{line}");
    }
}
