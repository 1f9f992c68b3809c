//! Schema 1 of the JSON report, frozen: what `--schema 1` writes, key for key, for readers that check every key.
//!
//! Schema 2 is schema 1 plus fields (`report`); nothing of schema 1 changed name, type or meaning. A reader that
//! refuses unknown keys (a strict JSON-schema check, a golden test) pins `--schema 1` (or `PYNISH_SCHEMA=1`) and
//! gets exactly the keys it was written against, in the same order, whatever later schemas add. A borrowed view
//! rather than a copy of the types, so that it cannot drift from what the run recorded.

use crate::record::LimitsAsked;
use crate::report::Report;
use crate::verdict::Verdict;
use serde::Serialize;

/// The schema-1 rendering of `report`: one line, the keys schema 1 had and no other.
pub fn to_json(report: &Report) -> String {
    let r = report;
    let l: &LimitsAsked = &r.limits;
    let (u, e, f) = (&r.usage, &r.escalation, &r.enforcement);
    let view = Report1 {
        schema: 1,
        label: &r.label,
        verdict: r.verdict,
        exit_code: r.exit_code,
        command_exit_code: r.command_exit_code,
        signal: &r.signal,
        received_signal: &r.received_signal,
        limits: Limits1 {
            wall_time_s: l.wall_time_s,
            cpu_time_s: l.cpu_time_s,
            memory_bytes: l.memory_bytes,
            memory_kind: l.memory_kind,
            processes: l.processes,
            grace_s: l.grace_s,
            signal: &l.signal,
        },
        usage: Usage1 {
            wall_time_s: u.wall_time_s,
            cpu_user_s: u.cpu_user_s,
            cpu_system_s: u.cpu_system_s,
            cpu_time_s: u.cpu_time_s,
            peak_memory_bytes: u.peak_memory_bytes,
            max_processes: u.max_processes,
        },
        escalation: Escalation1 {
            first_signal: &e.first_signal,
            first_signal_at_s: e.first_signal_at_s,
            signalled_processes: e.signalled_processes,
            sigkill_sent: e.sigkill_sent,
            sigkill_at_s: e.sigkill_at_s,
            killed_processes: e.killed_processes,
        },
        backend: &r.backend,
        enforcement: Enforcement1 {
            wall_time: &f.wall_time,
            cpu_time: &f.cpu_time,
            memory: &f.memory,
            processes: &f.processes,
        },
        command: &r.command,
        pid: r.pid,
        error: &r.error,
    };
    serde_json::to_string(&view).expect("the report holds only plain values")
}

#[derive(Serialize)]
struct Report1<'a> {
    schema: u32,
    label: &'a Option<String>,
    verdict: Verdict,
    exit_code: u8,
    command_exit_code: Option<i32>,
    signal: &'a Option<String>,
    received_signal: &'a Option<String>,
    limits: Limits1<'a>,
    usage: Usage1,
    escalation: Escalation1<'a>,
    backend: &'a str,
    enforcement: Enforcement1<'a>,
    command: &'a [String],
    pid: Option<i32>,
    error: &'a Option<String>,
}

#[derive(Serialize)]
struct Limits1<'a> {
    wall_time_s: Option<f64>,
    cpu_time_s: Option<f64>,
    memory_bytes: Option<u64>,
    memory_kind: crate::limits::MemoryKind,
    processes: Option<u64>,
    grace_s: f64,
    signal: &'a str,
}

#[derive(Serialize)]
struct Usage1 {
    wall_time_s: f64,
    cpu_user_s: f64,
    cpu_system_s: f64,
    cpu_time_s: f64,
    peak_memory_bytes: u64,
    max_processes: u64,
}

#[derive(Serialize)]
struct Escalation1<'a> {
    first_signal: &'a Option<String>,
    first_signal_at_s: Option<f64>,
    signalled_processes: usize,
    sigkill_sent: bool,
    sigkill_at_s: Option<f64>,
    killed_processes: usize,
}

#[derive(Serialize)]
struct Enforcement1<'a> {
    wall_time: &'a Option<String>,
    cpu_time: &'a Option<String>,
    memory: &'a Option<String>,
    processes: &'a Option<String>,
}
