//! The report's schema 1 against a checked-in example (`tests/golden/report-schema-1.json`, written by pynish
//! before the core was reorganised around `record`): a fixed run's report must have the same keys, the same JSON
//! types and the same kinds of value (integer or float, null or not) at every place, and the same values where
//! the run fixes them. So no refactor of the types behind the report can drift the public contract unnoticed.
//! Under `--schema 1` the keys are exactly the example's; by default (schema 2) the report is the example plus
//! fields, every key and kind of schema 1 still in place.

use crate::util::*;
use serde_json::Value;

const GOLDEN: &str = include_str!("golden/report-schema-1.json");

/// The fixed run the example came from: every limit and option set, so that no field is null by chance; proc, so
/// that `backend` and `enforcement` do not depend on the machine; a command that ignores SIGTERM, so that the
/// escalation reaches SIGKILL.
const ARGS: &[&str] = &[
    "--backend",
    "proc",
    "--json",
    "-w",
    "1",
    "-g",
    "0.2",
    "-c",
    "60",
    "-m",
    "1GiB",
    "--memory-kind",
    "virtual",
    "-p",
    "100",
    "--label",
    "nightly-42",
    "--",
    "sh",
    "-c",
    "trap \"\" TERM; sleep 5",
];

/// Places whose value depends on the run (timings, usage, pids, how many members a signal reached): only their
/// kind is compared.
const VARYING: &[&str] = &[
    "/usage/wall_time_s",
    "/usage/cpu_user_s",
    "/usage/cpu_system_s",
    "/usage/cpu_time_s",
    "/usage/peak_memory_bytes",
    "/usage/max_processes",
    "/escalation/first_signal_at_s",
    "/escalation/signalled_processes",
    "/escalation/sigkill_at_s",
    "/escalation/killed_processes",
    "/pid",
];

/// The JSON kind of a value, telling integers from floats (`1.0` is a float in the report, `1` an integer).
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every difference between `got` and `want` below `path`: keys, kinds, and values outside `VARYING`; with
/// `extra`, keys of `got` that `want` lacks are allowed (a later schema adds fields).
fn differences(path: &str, got: &Value, want: &Value, extra: bool, out: &mut Vec<String>) {
    if kind(got) != kind(want) {
        out.push(format!("{path}: {} ({got}) where schema 1 has {} ({want})", kind(got), kind(want)));
        return;
    }
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            for key in w.keys().filter(|k| !g.contains_key(*k)) {
                out.push(format!("{path}/{key}: missing"));
            }
            for key in g.keys().filter(|k| !extra && !w.contains_key(*k)) {
                out.push(format!("{path}/{key}: not in schema 1's example"));
            }
            for (key, w) in w {
                if let Some(g) = g.get(key) {
                    differences(&format!("{path}/{key}"), g, w, extra, out);
                }
            }
        }
        (Value::Array(g), Value::Array(w)) if g.len() == w.len() => {
            for (i, (g, w)) in g.iter().zip(w).enumerate() {
                differences(&format!("{path}/{i}"), g, w, extra, out);
            }
        }
        _ if VARYING.contains(&path) => {}
        _ if got != want => out.push(format!("{path}: {got} where the fixed run gave {want}")),
        _ => {}
    }
}

/// The keys of `value` at every depth, as paths.
fn paths(prefix: &str, value: &Value, out: &mut Vec<String>) {
    if let Value::Object(map) = value {
        for (key, value) in map {
            let path = format!("{prefix}/{key}");
            paths(&path, value, out);
            out.push(path);
        }
    }
    out.sort();
}

#[test]
fn the_report_of_a_fixed_run_under_schema_1_matches_schema_1s_example() {
    let golden: Value = serde_json::from_str(GOLDEN).expect("the example is JSON");
    let out = pynish().args(["--schema", "1"]).args(ARGS).output().unwrap();
    assert_eq!(code(&out), 124, "{}", String::from_utf8_lossy(&out.stderr));
    let got = report(&out);
    let mut found = Vec::new();
    differences("", &got, &golden, false, &mut found);
    assert!(found.is_empty(), "the report drifted from schema 1:\n{}\n{got}", found.join("\n"));
}

#[test]
fn schema_1_keeps_the_examples_order_of_keys() {
    // A reader comparing lines (a golden test of its own) sees the example's order too. serde_json's Value sorts
    // keys, so the order is read from the text: where each `"key":` first appears.
    let out = pynish().args(["--schema", "1"]).args(ARGS).output().unwrap();
    let line = String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or_default().to_owned();
    let mut keys = Vec::new();
    paths("", &serde_json::from_str(GOLDEN).expect("JSON"), &mut keys);
    let last = |path: &String| path.rsplit('/').next().unwrap_or_default().to_owned();
    let order = |text: &str| {
        let mut seen: Vec<(usize, String)> =
            keys.iter().map(|k| (text.find(&format!("\"{}\":", last(k))).unwrap_or(usize::MAX), last(k))).collect();
        seen.sort();
        seen.into_iter().map(|(_, k)| k).collect::<Vec<_>>()
    };
    let (got, want) = (order(&line), order(GOLDEN));
    assert_eq!(got, want, "{line}");
}

#[test]
fn the_default_report_is_schema_1s_example_plus_fields() {
    let golden: Value = serde_json::from_str(GOLDEN).expect("the example is JSON");
    let out = pynish().args(ARGS).output().unwrap();
    assert_eq!(code(&out), 124, "{}", String::from_utf8_lossy(&out.stderr));
    let mut got = report(&out);
    assert_eq!(got["schema"], pynish::report::SCHEMA);
    got["schema"] = golden["schema"].clone();
    let mut found = Vec::new();
    differences("", &got, &golden, true, &mut found);
    assert!(found.is_empty(), "a field of schema 1 changed in schema 2:\n{}\n{got}", found.join("\n"));
    let env = pynish().env("PYNISH_SCHEMA", "1").args(ARGS).output().unwrap();
    assert_eq!(report(&env)["schema"], 1, "PYNISH_SCHEMA=1 gives schema 1");
}

#[test]
fn a_bad_schema_is_refused_and_nothing_runs() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    for (flag, env) in [(Some("3"), None), (Some("0"), None), (None, Some("x"))] {
        let mut cmd = pynish();
        if let Some(flag) = flag {
            cmd.args(["--schema", flag]);
        }
        if let Some(env) = env {
            cmd.env("PYNISH_SCHEMA", env);
        }
        let out = cmd.arg("--").arg("touch").arg(&marker).output().unwrap();
        assert_eq!(code(&out), 125, "{flag:?} {env:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr).trim().lines().count(), 1, "{out:?}");
        assert!(!marker.exists());
    }
}

#[test]
fn a_spawn_error_report_has_schema_1s_keys() {
    let golden: Value = serde_json::from_str(GOLDEN).expect("the example is JSON");
    let out = pynish().args(["--schema", "1", "--json", "--", "/nonexistent/pynish-golden"]).output().unwrap();
    assert_eq!(code(&out), 127);
    let got = report(&out);
    let (mut want_keys, mut got_keys) = (Vec::new(), Vec::new());
    paths("", &golden, &mut want_keys);
    paths("", &got, &mut got_keys);
    assert_eq!(got_keys, want_keys, "{got}");
    assert_eq!(got["verdict"], "spawn_error");
    let out = pynish().args(["--json", "--", "/nonexistent/pynish-golden"]).output().unwrap();
    let got = report(&out);
    let mut got_keys = Vec::new();
    paths("", &got, &mut got_keys);
    let missing: Vec<_> = want_keys.iter().filter(|k| !got_keys.contains(k)).collect();
    assert!(missing.is_empty(), "schema 2 lost {missing:?}: {got}");
}

#[test]
fn the_example_reads_back_into_the_library_types_unchanged() {
    let report: pynish::report::Report = serde_json::from_str(GOLDEN).expect("schema 1 deserializes");
    assert_eq!(report.verdict, pynish::verdict::Verdict::WallTime);
    assert_eq!(report.limits.memory_kind, pynish::limits::MemoryKind::Virtual);
    assert_eq!(pynish::schema1::to_json(&report), GOLDEN.trim_end(), "written back as schema 1, the same line");
}

#[test]
fn the_io_figures_and_output_are_schema_2_only() {
    let golden: Value = serde_json::from_str(GOLDEN).expect("the example is JSON");
    let mut want_keys = Vec::new();
    paths("", &golden, &mut want_keys);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out.log");
    let run = |schema: &str| {
        let out = pynish()
            .args(["--schema", schema, "--json", "--output"])
            .arg(&file)
            .args(["--output-limit", "1KiB", "--", "echo", "hi"])
            .output()
            .unwrap();
        assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
        report(&out)
    };
    let one = run("1");
    let mut got_keys = Vec::new();
    paths("", &one, &mut got_keys);
    assert_eq!(got_keys, want_keys, "schema 1 with --output: exactly schema 1's keys: {one}");
    let two = run("2");
    assert!(two["usage"]["io_read_bytes"].is_u64() && two["usage"]["io_write_bytes"].is_u64(), "{two}");
    assert_eq!(two["output"]["bytes_written"], 3, "{two}");
    assert_eq!(two["output"]["limit_bytes"], 1024, "{two}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "hi\n");
}
