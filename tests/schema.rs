//! The report's schema 1 against a checked-in example (`tests/golden/report-schema-1.json`, written by pynish
//! before the core was reorganised around `record`): a fixed run's report must have the same keys, the same JSON
//! types and the same kinds of value (integer or float, null or not) at every place, and the same values where
//! the run fixes them. So no refactor of the types behind the report can drift the public contract unnoticed.

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

/// Every difference between `got` and `want` below `path`: keys, kinds, and values outside `VARYING`.
fn differences(path: &str, got: &Value, want: &Value, out: &mut Vec<String>) {
    if kind(got) != kind(want) {
        out.push(format!("{path}: {} ({got}) where schema 1 has {} ({want})", kind(got), kind(want)));
        return;
    }
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            for key in w.keys().filter(|k| !g.contains_key(*k)) {
                out.push(format!("{path}/{key}: missing"));
            }
            for key in g.keys().filter(|k| !w.contains_key(*k)) {
                out.push(format!("{path}/{key}: not in schema 1's example"));
            }
            for (key, w) in w {
                if let Some(g) = g.get(key) {
                    differences(&format!("{path}/{key}"), g, w, out);
                }
            }
        }
        (Value::Array(g), Value::Array(w)) if g.len() == w.len() => {
            for (i, (g, w)) in g.iter().zip(w).enumerate() {
                differences(&format!("{path}/{i}"), g, w, out);
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
fn the_report_of_a_fixed_run_matches_schema_1s_example() {
    let golden: Value = serde_json::from_str(GOLDEN).expect("the example is JSON");
    let out = pynish().args(ARGS).output().unwrap();
    assert_eq!(code(&out), 124, "{}", String::from_utf8_lossy(&out.stderr));
    let got = report(&out);
    let mut found = Vec::new();
    differences("", &got, &golden, &mut found);
    assert!(found.is_empty(), "the report drifted from schema 1:\n{}\n{got}", found.join("\n"));
}

#[test]
fn a_spawn_error_report_has_schema_1s_keys() {
    let golden: Value = serde_json::from_str(GOLDEN).expect("the example is JSON");
    let out = pynish().args(["--json", "--", "/nonexistent/pynish-golden"]).output().unwrap();
    assert_eq!(code(&out), 127);
    let got = report(&out);
    let (mut want_keys, mut got_keys) = (Vec::new(), Vec::new());
    paths("", &golden, &mut want_keys);
    paths("", &got, &mut got_keys);
    assert_eq!(got_keys, want_keys, "{got}");
    assert_eq!(got["verdict"], "spawn_error");
}

#[test]
fn the_example_reads_back_into_the_library_types_unchanged() {
    let report: pynish::report::Report = serde_json::from_str(GOLDEN).expect("schema 1 deserializes");
    assert_eq!(report.verdict, pynish::verdict::Verdict::WallTime);
    assert_eq!(report.limits.memory_kind, pynish::limits::MemoryKind::Virtual);
    assert_eq!(report.to_json(), GOLDEN.trim_end(), "written back, the same line");
}
