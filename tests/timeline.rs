//! `--timeline FILE` and `pynish plot`: what the tree did over time, as JSON lines and as a picture.

use crate::util::*;
use serde_json::Value;
use std::path::Path;

/// Every line of a timeline, parsed; panics on a line that is not JSON.
fn read_timeline(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("line {} is not JSON ({e}): {line}", i + 1))
        })
        .collect()
}

fn samples(lines: &[Value]) -> Vec<&Value> {
    lines.iter().skip(1).filter(|l| l.get("event").is_none()).collect()
}

fn events(lines: &[Value]) -> Vec<&str> {
    lines.iter().filter_map(|l| l.get("event").and_then(Value::as_str)).collect()
}

/// The header first, `t` never decreasing, the `end` event last.
fn assert_well_formed(lines: &[Value], backend: &str) {
    assert_eq!(lines[0]["timeline"], 1, "header: {}", lines[0]);
    assert_eq!(lines[0]["backend"], backend, "header: {}", lines[0]);
    let mut last = 0.0;
    for line in &lines[1..] {
        let t = f(&line["t"]);
        assert!(t >= last, "t went back from {last} to {t}: {line}");
        last = t;
    }
    assert_eq!(lines.last().unwrap()["event"], "end", "the end comes last");
}

/// Renders `svg` with librsvg, as a browser or a CI artifact page would show it (skipped, with the reason,
/// where librsvg's tool is absent outside CI).
fn assert_renders(svg: &Path) {
    if !have_tool("rsvg-convert", "--version", "librsvg2-bin") {
        return;
    }
    let png = svg.with_extension("png");
    let output = match std::process::Command::new("rsvg-convert").arg(svg).arg("-o").arg(&png).output() {
        Ok(output) => output,
        Err(e) => panic!("rsvg-convert cannot run ({e}): install librsvg2-bin (Debian), as .ci/run does"),
    };
    assert!(
        output.status.success(),
        "rsvg-convert fails on {}: {}",
        svg.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0) > 1000, "rsvg-convert drew nothing");
}

#[test]
fn memory_limit_run_is_recorded_and_drawn_on_every_backend() {
    let dir = tempfile::tempdir().unwrap();
    for backend in backends() {
        let path = dir.path().join(format!("{backend}.jsonl"));
        // Two processes, each 4 MiB more every 50 ms, until the 100 MB limit ends them.
        let output = pynish_on(backend)
            .args(["--memory", "100MB", "--timeline"])
            .arg(&path)
            .args(["--", &testkit(), "grow", "2", "4", "50"])
            .output()
            .unwrap();
        assert_eq!(code(&output), 122, "{backend}: {}", String::from_utf8_lossy(&output.stderr));
        let lines = read_timeline(&path);
        assert_well_formed(&lines, backend);
        let samples = samples(&lines);
        assert!(samples.len() >= 10, "{backend}: only {} samples", samples.len());
        let peak = samples.iter().map(|s| f(&s["memory_bytes"])).fold(0.0, f64::max);
        // A cgroup's charge stops at its limit; pynish's own samples (proc) may catch the tree one step past it.
        let most = if backend == "proc" { 110e6 } else { 100e6 };
        assert!((60e6..=most).contains(&peak), "{backend}: memory peaked at {peak} bytes");
        let processes = samples.iter().map(|s| f(&s["processes"])).fold(0.0, f64::max);
        assert!(processes >= 2.0, "{backend}: at most {processes} processes seen");
        let events = events(&lines);
        assert!(events.contains(&"signal") || events.contains(&"oom_kill"), "{backend}: events {events:?}");
        assert!(events.contains(&"exit"), "{backend}: events {events:?}");
        let end = lines.last().unwrap();
        assert_eq!((end["verdict"].as_str(), end["exit_code"].as_u64()), (Some("memory"), Some(122)), "{end}");

        let svg = dir.path().join(format!("{backend}.svg"));
        pynish().arg("plot").arg(&path).arg("-o").arg(&svg).assert().success();
        assert_renders(&svg);
    }
}

#[test]
fn idle_sleep_writes_a_bounded_number_of_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("idle.jsonl");
    pynish().arg("--timeline").arg(&path).args(["--", "sleep", "3"]).assert().success();
    let lines = read_timeline(&path);
    assert!((3..=400).contains(&lines.len()), "{} lines for an idle 3 s", lines.len());
    assert_well_formed(&lines, lines[0]["backend"].as_str().unwrap());
    let last = samples(&lines).last().map(|s| f(&s["t"])).unwrap_or(0.0);
    assert!(last >= 2.5, "the samples stop at {last} s of 3");
}

#[test]
fn timeline_in_a_missing_directory_is_bad_input_and_nothing_runs() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let output = pynish()
        .arg("--timeline")
        .arg(dir.path().join("missing/t.jsonl"))
        .args(["--", "touch"])
        .arg(&marker)
        .output()
        .unwrap();
    assert_eq!(code(&output), 125);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("timeline"), "{stderr}");
    assert!(!marker.exists(), "the command ran");
}

#[test]
fn timeline_that_cannot_be_written_is_bad_input_and_nothing_runs() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    // /dev/full takes the open and refuses the first write: the header, written before the command starts.
    for destination in [Path::new("/dev/full"), dir.path()] {
        let output = pynish().arg("--timeline").arg(destination).args(["--", "touch"]).arg(&marker).output().unwrap();
        assert_eq!(code(&output), 125, "{}: {}", destination.display(), String::from_utf8_lossy(&output.stderr));
        assert!(!marker.exists(), "the command ran with --timeline {}", destination.display());
    }
}

#[test]
fn plot_writes_next_to_the_timeline_and_refuses_what_is_not_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.jsonl");
    pynish().arg("--timeline").arg(&path).args(["--", "true"]).assert().success();
    pynish().arg("plot").arg(&path).assert().success();
    assert!(dir.path().join("run.svg").exists(), "no run.svg next to run.jsonl");

    let report = dir.path().join("report.json");
    pynish().arg("--report").arg(&report).args(["--", "true"]).assert().success();
    let output = pynish().arg("plot").arg(&report).output().unwrap();
    assert_eq!(code(&output), 125, "a report is not a timeline");
    let output = pynish().arg("plot").arg(dir.path().join("missing.jsonl")).output().unwrap();
    assert_eq!(code(&output), 125);
    assert_eq!(String::from_utf8_lossy(&output.stderr).lines().count(), 1);
}

#[test]
fn plot_finishes_on_any_number() {
    // A timeline may come from anywhere (edited, another program): numbers near the largest float once sent the
    // plotting library's tick search into an endless loop, and a huge count overflowed.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.jsonl");
    pynish().arg("--timeline").arg(&path).args(["--memory-kind", "virtual", "--", "true"]).assert().success();
    let header = std::fs::read_to_string(&path).unwrap().lines().next().unwrap().to_string();
    let huge = ["1.7976931348623157e308", "-1.7976931348623157e308", "1e300", "5e-324"];
    for key in ["t", "cpu_user_s", "cpu_system_s", "memory_bytes", "processes"] {
        for value in huge {
            let sample = format!(
                r#"{{"t":0.1,"cpu_user_s":1,"cpu_system_s":0,"memory_bytes":1,"processes":1,"{key}":{value}}}"#
            );
            std::fs::write(&path, format!("{header}\n{sample}\n")).unwrap();
            let output = pynish().arg("plot").arg(&path).timeout(std::time::Duration::from_secs(20)).output().unwrap();
            assert_eq!(code(&output), 0, "{key}={value}: {}", String::from_utf8_lossy(&output.stderr));
        }
    }
    // Limits in the header too.
    for key in ["wall_time_s", "cpu_time_s", "memory_bytes", "processes"] {
        let mut value: Value = serde_json::from_str(&header).unwrap();
        value["limits"][key] = serde_json::json!(1.7976931348623157e308);
        std::fs::write(&path, format!("{value}\n{{\"t\":0.1,\"cpu_user_s\":1}}\n")).unwrap();
        let output = pynish().arg("plot").arg(&path).timeout(std::time::Duration::from_secs(20)).output().unwrap();
        assert_eq!(code(&output), 0, "limit {key}: {}", String::from_utf8_lossy(&output.stderr));
    }
    // What is not JSON (NaN, inf) is refused at once.
    std::fs::write(&path, format!("{header}\n{{\"t\":NaN}}\n{{\"t\":inf}}\n")).unwrap();
    let output = pynish().arg("plot").arg(&path).timeout(std::time::Duration::from_secs(20)).output().unwrap();
    assert_eq!(code(&output), 125, "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn a_stalled_timeline_reader_never_delays_a_limit() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("timeline.fifo");
    let name = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
    // SAFETY: mkfifo and open read the path only; the descriptor is closed below.
    let reader = unsafe {
        assert_eq!(libc::mkfifo(name.as_ptr(), 0o600), 0, "mkfifo");
        libc::open(name.as_ptr(), libc::O_RDONLY | libc::O_NONBLOCK)
    };
    assert!(reader >= 0, "open the FIFO");
    // A reader that never reads, with the smallest pipe: the writer blocks after about a second of lines.
    // SAFETY: F_SETPIPE_SZ takes an integer.
    unsafe { libc::fcntl(reader, libc::F_SETPIPE_SZ, 4096) };
    let (output, took) =
        timed(pynish_on("proc").args(["--wall-time", "2s", "--timeline"]).arg(&fifo).args(["--", "sleep", "30"]));
    // SAFETY: closes the descriptor opened above.
    unsafe { libc::close(reader) };
    assert_eq!(code(&output), 124);
    let first_signal = f(&report(&output)["escalation"]["first_signal_at_s"]);
    assert!((2.0..2.5).contains(&first_signal), "the limit acted at {first_signal} s, not 2 s");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("timeline"), "the stalled timeline is not mentioned:\n{stderr}");
    assert!(took.as_secs() < 15, "pynish waited {took:?} for its timeline");
}

#[test]
fn cpu_is_split_into_user_and_system_on_every_backend() {
    let dir = tempfile::tempdir().unwrap();
    for backend in backends() {
        let path = dir.path().join(format!("{backend}.jsonl"));
        let output = pynish_on(backend)
            .args(["--cpu-time", "500ms", "--timeline"])
            .arg(&path)
            .args(["--", &testkit(), "spin"])
            .output()
            .unwrap();
        assert_eq!(code(&output), 123, "{backend}: {}", String::from_utf8_lossy(&output.stderr));
        let lines = read_timeline(&path);
        let samples = samples(&lines);
        let (mut user, mut system) = (0.0, 0.0);
        for sample in &samples {
            let (u, s) = (f(&sample["cpu_user_s"]), f(&sample["cpu_system_s"]));
            assert!(u >= user && s >= system, "{backend}: CPU went back to {u} + {s} from {user} + {system}");
            (user, system) = (u, s);
        }
        // A busy loop runs in user mode; the limit ends it at 500 ms of CPU.
        assert!(user > system, "{backend}: {user} s user, {system} s system");
        let total = f(&report(&output)["usage"]["cpu_time_s"]);
        assert!(user + system <= total + 0.002 && user + system >= 0.3, "{backend}: {user} + {system} of {total}");
    }
}
