//! pynish's integration tests: one crate, one module per behaviour, all against the built binary and real
//! processes (see `util` for the helpers and `examples/testkit.rs` for the workloads).

mod harness;
mod util;

mod adopt;
mod adversarial;
mod adversarial_new;
mod artifacts;
mod backend_choice;
mod cgroup;
mod concurrency;
mod cpus;
mod escalation;
mod exit_codes;
mod flags;
mod inherit;
mod input;
mod json;
mod killer;
mod leftovers;
mod lifeline;
mod limits;
mod messages;
mod namespaces;
mod other_users;
mod output;
mod passthrough;
mod recipes;
mod records;
mod report_dest;
mod resources;
mod rlimits;
mod rough_edges;
mod schema;
mod signals;
mod soft;
mod startup;
mod strays;
mod terminal;
mod timeline;
mod tree;
mod true_figures;
