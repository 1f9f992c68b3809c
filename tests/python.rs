//! The Python package's pytest suite (`python/tests/`), run by `cargo test` against the pynish binary cargo built.
//!
//! Makes a virtual environment in `<target>/pytest-venv` (reused while it imports all of REQUIREMENTS) with those
//! from PyPI, then runs `python -m pytest python/tests` with `PYNISH_BIN` set to this build's binary and
//! `PYTHONPATH=python`, so the package is tested from the source tree without building a wheel. Fails, with the
//! reason, when python3 or its venv module is missing (CI installs python3-venv); it never passes silently.
//!
//! This is the only test in its binary, and cargo runs test binaries one after another, so pytest's two workers
//! do not compete with the other test files for the CPU.

use std::path::{Path, PathBuf};
use std::process::Command;

/// What the suite needs from PyPI; the package itself comes from `python/` on PYTHONPATH. loky, tblib, psutil and
/// dask.distributed are where pynisher's users run limited calls (issue 18); IPython is where many define the
/// functions they limit, in a main that is no file (issue 28); mypy checks the package's types. With them pip
/// takes a few seconds more.
const REQUIREMENTS: &[&str] =
    &["pytest", "pytest-xdist", "cloudpickle", "loky", "tblib", "psutil", "dask[distributed]", "ipython", "mypy"];

/// The modules that tell an existing venv has all of REQUIREMENTS (else it is made again).
const READY: &str = "import pytest, xdist, cloudpickle, loky, tblib, psutil, distributed, IPython, mypy";

fn target_dir() -> PathBuf {
    // The binary is <target>/<profile>/pynish: this honours CARGO_TARGET_DIR without reading it.
    let bin = Path::new(env!("CARGO_BIN_EXE_pynish"));
    bin.parent().and_then(Path::parent).expect("binary inside a target directory").to_path_buf()
}

fn run(cmd: &mut Command, what: &str) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: could not start {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{what} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

fn venv_python() -> PathBuf {
    let venv = target_dir().join("pytest-venv");
    let python = venv.join("bin").join("python");
    let ready = python.exists() && Command::new(&python).args(["-c", READY]).output().is_ok_and(|o| o.status.success());
    if ready {
        return python;
    }
    let python3 = Command::new("python3").arg("--version").output();
    if !python3.as_ref().is_ok_and(|o| o.status.success()) {
        panic!("python3 is needed for the Python package's tests (tests/python.rs) and was not found on PATH");
    }
    let made = Command::new("python3").args(["-m", "venv", "--clear"]).arg(&venv).output().expect("python3 -m venv");
    if !made.status.success() {
        panic!(
            "`python3 -m venv {}` failed; on Debian/Ubuntu install python3-venv:\n{}",
            venv.display(),
            String::from_utf8_lossy(&made.stderr)
        );
    }
    run(
        Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
            .args(REQUIREMENTS),
        "pip install of the test requirements",
    );
    python
}

#[test]
fn pytest_suite() {
    let python = venv_python();
    let root = env!("CARGO_MANIFEST_DIR");
    let mut pytest = Command::new(&python);
    // SIGINT and SIGQUIT at their default, as from a terminal: a suite started in the background of a shell
    // script inherits them ignored, pynish passes an ignored signal on as ignored, and the tests of Ctrl-C and
    // KeyboardInterrupt would then test a caller that cannot be interrupted.
    // SAFETY: signal() is async-signal-safe and the closure allocates nothing.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut pytest, || {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGQUIT, libc::SIG_DFL);
            Ok(())
        });
    }
    let out = pytest
        .args(["-m", "pytest", "python/tests", "-q", "-n", "2", "-p", "no:cacheprovider", "-rfEs"])
        .current_dir(root)
        .env("PYNISH_BIN", env!("CARGO_BIN_EXE_pynish"))
        .env("PYTHONPATH", "python")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("PYNISH_TEST_TARGET")
        .env_remove("PYNISH_BACKEND")
        .env_remove("PYNISH_GRACE")
        .env_remove("PYNISH_SIGNAL")
        .output()
        .expect("run pytest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary = stdout.lines().rev().find(|l| l.contains(" in ") && l.contains('=') || l.contains(" passed"));
    println!("pytest: {}", summary.unwrap_or("(no summary line)"));
    assert!(out.status.success(), "pytest failed ({}):\n{stdout}\n{stderr}", out.status);
}
