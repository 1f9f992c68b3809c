//! Small, predictable workloads for pynish's tests and benchmark: spinners, allocators, forkers, daemons.
//!
//! Built by `cargo test` (as an example, so it never ships with pynish). Each mode prints nothing unless it says
//! so, and every mode that forks bounds what it forks.
//!
//! Modes:
//!   spin [THREADS]                      busy loop on THREADS threads (default 1), forever
//!   spin-children N                     fork N children that each spin forever; the parent waits
//!   alloc TOTAL_MB [STEP_MB] [DELAY_MS] allocate and touch TOTAL_MB in steps, then hold it forever
//!   hog-children N MB                   fork N children that each hold MB of touched memory forever
//!   forkbomb ATTEMPTS                   try ATTEMPTS forks; each child sleeps 60 s; report "forks ok/failed" on stdout
//!   daemon PIDFILE                      double-fork a setsid grandchild that sleeps 300 s and writes its pid, then sleep 300 s
//!   write BYTES                         write BYTES of a fixed pattern to stdout
//!   children N                          fork N short-lived children one after another, reaping none, then exit 0

use std::io::Write;
use std::time::Duration;

fn arg(args: &[String], i: usize, default: u64) -> u64 {
    args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default)
}

fn spin() -> ! {
    let mut x: u64 = 0;
    loop {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}

fn hold() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn touch(mb: u64) -> Vec<u8> {
    let mut block = vec![0u8; (mb as usize) << 20];
    for page in block.chunks_mut(4096) {
        page[0] = 1;
    }
    block
}

fn fork() -> i32 {
    // SAFETY: the test helper is single-threaded when it forks; the child only calls async-signal-safe code
    // or std functions that do not depend on other threads.
    unsafe { libc::fork() }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("spin") => {
            for _ in 1..arg(&args, 1, 1) {
                std::thread::spawn(|| spin());
            }
            spin();
        }
        Some("spin-children") => {
            for _ in 0..arg(&args, 1, 1) {
                if fork() == 0 {
                    spin();
                }
            }
            while unsafe { libc::wait(std::ptr::null_mut()) } > 0 {}
        }
        Some("alloc") => {
            let (total, step, delay) = (arg(&args, 1, 100), arg(&args, 2, 10).max(1), arg(&args, 3, 0));
            let mut blocks = Vec::new();
            let mut done = 0;
            while done < total {
                blocks.push(touch(step.min(total - done)));
                done += step;
                std::thread::sleep(Duration::from_millis(delay));
            }
            hold();
        }
        Some("hog-children") => {
            let (n, mb) = (arg(&args, 1, 1), arg(&args, 2, 10));
            for _ in 0..n {
                if fork() == 0 {
                    let _block = touch(mb);
                    hold();
                }
            }
            while unsafe { libc::wait(std::ptr::null_mut()) } > 0 {}
        }
        Some("forkbomb") => {
            let (mut ok, mut failed) = (0, 0);
            for _ in 0..arg(&args, 1, 100) {
                match fork() {
                    0 => {
                        std::thread::sleep(Duration::from_secs(60));
                        unsafe { libc::_exit(0) };
                    }
                    -1 => failed += 1,
                    _ => ok += 1,
                }
            }
            println!("forks {ok} ok {failed} failed");
            while unsafe { libc::wait(std::ptr::null_mut()) } > 0 {}
        }
        Some("daemon") => {
            let pidfile = args.get(1).expect("daemon PIDFILE").clone();
            if fork() == 0 {
                unsafe { libc::setsid() };
                if fork() == 0 {
                    let tmp = format!("{pidfile}.tmp");
                    std::fs::write(&tmp, std::process::id().to_string()).unwrap();
                    std::fs::rename(&tmp, &pidfile).unwrap();
                    std::thread::sleep(Duration::from_secs(300));
                    unsafe { libc::_exit(0) };
                }
                unsafe { libc::_exit(0) };
            }
            std::thread::sleep(Duration::from_secs(300));
        }
        Some("write") => {
            let mut left = arg(&args, 1, 0) as usize;
            let pattern: Vec<u8> = (0..65536u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
            let mut out = std::io::stdout().lock();
            while left > 0 {
                let n = left.min(pattern.len());
                out.write_all(&pattern[..n]).unwrap();
                left -= n;
            }
        }
        Some("children") => {
            for _ in 0..arg(&args, 1, 1) {
                if fork() == 0 {
                    unsafe { libc::_exit(0) };
                }
            }
        }
        _ => {
            eprintln!("testkit: unknown mode; see the module docs in examples/testkit.rs");
            std::process::exit(2);
        }
    }
}
