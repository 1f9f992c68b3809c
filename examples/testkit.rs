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
//!   grow N STEP_MB DELAY_MS             N processes (the command and N-1 children) each touch STEP_MB more
//!                                       every DELAY_MS, up to 2 GiB each, then hold it forever
//!   forkbomb ATTEMPTS                   try ATTEMPTS forks; each child sleeps 60 s; report "forks ok/failed" on stdout
//!   daemon PIDFILE                      double-fork a setsid grandchild that sleeps 300 s and writes its pid, then sleep 300 s
//!   write BYTES                         write BYTES of a fixed pattern to stdout
//!   children N                          fork N short-lived children one after another, reaping none, then exit 0
//!   escape setsid|setpgid PIDFILE [exit] a grandchild leaves the group (double fork + setsid, or setpgid),
//!                                       ignores TERM, HUP and INT, writes its pid and sleeps; the command then sleeps
//!                                       (or exits 0 with `exit`)
//!   record DIR N                        N processes (the command and N-1 children) write their pids to DIR/pids,
//!                                       then append "PID SIGNAME" to DIR/log for every INT, TERM, HUP, QUIT, USR1,
//!                                       USR2 they receive; they end only by SIGKILL
//!   stopper DIR N                       N processes write their pids to DIR/pids, then stop their whole process
//!                                       group with SIGSTOP; TERM, HUP or INT makes each stop itself again
//!   forkbomb-tree DEPTH PIDFILE         every process appends "PID TIME" to PIDFILE (TIME: seconds since the epoch,
//!                                       when it started), forks two children (depth - 1) and sleeps 60 s: at most
//!                                       2^(DEPTH+1) - 1 processes
//!   hopper HOPS DIR                     a child in its own process group writes DIR/started and waits for TERM, HUP
//!                                       or INT (blocked); then it forks a child in a new group and exits, HOPS
//!                                       times over; the last one writes "PID TIME" to DIR/escaped and sleeps.
//!                                       The command sleeps
//!   shared MB N                         touch MB, then fork N-1 children that share those pages copy-on-write;
//!                                       all hold forever
//!   zombies N                           fork N children that exit at once, reap none, and hold forever
//!   leader-exit N MB [spin]             the main thread exits (pthread_exit) while a second thread touches MB,
//!                                       forks N-1 children that each touch MB, and holds (or spins, as do they)
//!   burst MB                            touch MB (in huge pages where the kernel gives them: a few ms) and exit 0
//!   leave-groups PIDFILE                a child starts a session, writes itself into the root group of every
//!                                       hierarchy under /sys/fs/cgroup (root may), ignores TERM, HUP and INT,
//!                                       writes its pid and sleeps; the command sleeps

use std::io::Write;
use std::time::Duration;

/// What each process of `grow` allocates at most.
const GROW_CAP_MB: u64 = 2048;

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

/// Writes `text` to `path` atomically (temporary file, then rename), so a reader never sees it half written.
fn publish(path: &str, text: &str) {
    let tmp = format!("{path}.tmp{}", std::process::id());
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Appends one line with a single `write` on an O_APPEND descriptor, so lines of concurrent writers never mix.
fn append_line(path: &str, line: &str) {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    let _ = file.write_all(format!("{line}\n").as_bytes());
}

/// Sets `signals` to be ignored (the disposition survives fork and exec).
fn ignore(signals: &[i32]) {
    for &signal in signals {
        // SAFETY: SIG_IGN installs no handler code.
        unsafe { libc::signal(signal, libc::SIG_IGN) };
    }
}

extern "C" fn stop_self(_: libc::c_int) {
    // SAFETY: raise is async-signal-safe.
    unsafe { libc::raise(libc::SIGSTOP) };
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        _ => "OTHER",
    }
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
        Some("grow") => {
            // Every process grows the same way; each stops at GROW_CAP_MB, so nothing runs away unsupervised.
            let (n, step, delay) = (arg(&args, 1, 2).max(1), arg(&args, 2, 4).max(1), arg(&args, 3, 50));
            for _ in 1..n {
                if fork() == 0 {
                    break;
                }
            }
            let mut blocks = Vec::new();
            for _ in 0..GROW_CAP_MB / step {
                blocks.push(touch(step));
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
        Some("escape") => {
            let kind = args.get(1).expect("escape setsid|setpgid PIDFILE").clone();
            let pidfile = args.get(2).expect("escape setsid|setpgid PIDFILE").clone();
            if fork() == 0 {
                match kind.as_str() {
                    "setsid" => {
                        unsafe { libc::setsid() };
                        if fork() != 0 {
                            unsafe { libc::_exit(0) };
                        }
                    }
                    "setpgid" => {
                        if fork() != 0 {
                            unsafe { libc::_exit(0) };
                        }
                        unsafe { libc::setpgid(0, 0) };
                    }
                    _ => panic!("escape: unknown kind {kind}"),
                }
                ignore(&[libc::SIGTERM, libc::SIGHUP, libc::SIGINT]);
                publish(&pidfile, &std::process::id().to_string());
                hold();
            }
            while !std::path::Path::new(&pidfile).exists() {
                std::thread::sleep(Duration::from_millis(5));
            }
            if args.get(3).map(String::as_str) == Some("exit") {
                std::process::exit(0);
            }
            hold();
        }
        Some("record") => {
            let dir = args.get(1).expect("record DIR N").clone();
            let watched = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT, libc::SIGUSR1, libc::SIGUSR2];
            // Blocked before the first fork: no signal sent after DIR/pids appears can be lost or act by default.
            // SAFETY: sigset_t is plain data, initialised by sigemptyset before use.
            let set = unsafe {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                for &signal in &watched {
                    libc::sigaddset(&mut set, signal);
                }
                libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                set
            };
            let mut pids = vec![std::process::id() as i32];
            for _ in 1..arg(&args, 2, 1) {
                match fork() {
                    0 => {
                        pids.clear();
                        break;
                    }
                    pid => pids.push(pid),
                }
            }
            if !pids.is_empty() {
                let text: Vec<String> = pids.iter().map(i32::to_string).collect();
                publish(&format!("{dir}/pids"), &text.join(" "));
            }
            let log = format!("{dir}/log");
            loop {
                let mut signal = 0;
                // SAFETY: `set` is initialised; sigwait writes only `signal`.
                if unsafe { libc::sigwait(&set, &mut signal) } == 0 {
                    append_line(&log, &format!("{} {}", std::process::id(), signal_name(signal)));
                }
            }
        }
        Some("stopper") => {
            let dir = args.get(1).expect("stopper DIR N").clone();
            for signal in [libc::SIGTERM, libc::SIGHUP, libc::SIGINT] {
                // SAFETY: the handler only calls raise, which is async-signal-safe.
                unsafe { libc::signal(signal, stop_self as *const () as libc::sighandler_t) };
            }
            let mut pids = vec![std::process::id().to_string()];
            for _ in 1..arg(&args, 2, 1) {
                match fork() {
                    0 => hold(),
                    pid => pids.push(pid.to_string()),
                }
            }
            publish(&format!("{dir}/pids"), &pids.join(" "));
            unsafe { libc::kill(0, libc::SIGSTOP) };
            hold();
        }
        Some("forkbomb-tree") => {
            let mut depth = arg(&args, 1, 1);
            let pidfile = args.get(2).expect("forkbomb-tree DEPTH PIDFILE").clone();
            'level: loop {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                append_line(&pidfile, &format!("{} {:.6}", std::process::id(), now.as_secs_f64()));
                if depth == 0 {
                    break;
                }
                for _ in 0..2 {
                    if fork() == 0 {
                        depth -= 1;
                        continue 'level;
                    }
                }
                break;
            }
            std::thread::sleep(Duration::from_secs(60));
        }
        Some("hopper") => {
            let hops = arg(&args, 1, 1);
            let dir = args.get(2).expect("hopper HOPS DIR").clone();
            if fork() == 0 {
                // Quiet until the first TERM, HUP or INT; then the hops, with the signals still blocked.
                // SAFETY: sigset_t is plain data, initialised by sigemptyset before use.
                let set = unsafe {
                    let mut set: libc::sigset_t = std::mem::zeroed();
                    libc::sigemptyset(&mut set);
                    for signal in [libc::SIGTERM, libc::SIGHUP, libc::SIGINT] {
                        libc::sigaddset(&mut set, signal);
                    }
                    libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                    set
                };
                unsafe { libc::setpgid(0, 0) };
                publish(&format!("{dir}/started"), &std::process::id().to_string());
                let mut signal = 0;
                // SAFETY: `set` is initialised; sigwait writes only `signal`.
                unsafe { libc::sigwait(&set, &mut signal) };
                let start = std::time::Instant::now();
                for _ in 0..hops {
                    match fork() {
                        0 => unsafe {
                            libc::setpgid(0, 0);
                        },
                        -1 => break,
                        _ => unsafe { libc::_exit(0) },
                    }
                }
                publish(&format!("{dir}/escaped"), &format!("{} {:?}", std::process::id(), start.elapsed()));
                hold();
            }
            hold();
        }
        Some("shared") => {
            let (mb, n) = (arg(&args, 1, 100), arg(&args, 2, 2));
            let _block = touch(mb);
            for _ in 1..n {
                if fork() == 0 {
                    hold();
                }
            }
            hold();
        }
        Some("zombies") => {
            for _ in 0..arg(&args, 1, 1) {
                if fork() == 0 {
                    unsafe { libc::_exit(0) };
                }
            }
            hold();
        }
        Some("leader-exit") => {
            let (n, mb) = (arg(&args, 1, 1), arg(&args, 2, 10));
            let busy = args.get(3).map(String::as_str) == Some("spin");
            std::thread::spawn(move || {
                // Forks only once the main thread is gone (its `stat` says Z), so that no lock it held is copied.
                let leader_gone = || std::fs::read_to_string("/proc/self/stat").is_ok_and(|s| s.contains(") Z "));
                while !leader_gone() {
                    std::thread::sleep(Duration::from_millis(1));
                }
                for _ in 1..n {
                    if fork() == 0 {
                        break;
                    }
                }
                let _block = touch(mb);
                if busy { spin() } else { hold() }
            });
            // The raw exit(2) system call ends this thread only (as pthread_exit does in C, without the unwinding
            // that Rust's main cannot catch); the process lives on in the thread spawned above.
            // SAFETY: nothing of this thread is used after it ends; the other thread owns what it uses.
            unsafe { libc::syscall(libc::SYS_exit, 0) };
            unreachable!("exit(2) returned");
        }
        Some("burst") => {
            // Huge pages where the kernel offers them (THP `madvise` or `always`): one fault per 2 MB, so the whole
            // burst is over long before a supervisor's next sample.
            let len = (arg(&args, 1, 10) as usize) << 20;
            // SAFETY: a fresh private anonymous mapping; only this code touches it, within `len`.
            unsafe {
                let at = libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                );
                assert_ne!(at, libc::MAP_FAILED, "mmap");
                libc::madvise(at, len, libc::MADV_HUGEPAGE);
                let bytes = at as *mut u8;
                for offset in (0..len).step_by(4096) {
                    bytes.add(offset).write_volatile(1);
                }
            }
        }
        Some("leave-groups") => {
            let pidfile = args.get(1).expect("leave-groups PIDFILE").clone();
            if fork() == 0 {
                // Holds no pipe of pynish's caller: a test that gives up on pynish must not wait for this one.
                let null = std::fs::File::open("/dev/null").unwrap();
                for fd in 0..3 {
                    // SAFETY: dup2 onto the standard descriptors, which nothing in this process holds a reference to.
                    unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), fd) };
                }
                unsafe { libc::setsid() };
                let me = std::process::id().to_string();
                for entry in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
                    let _ = std::fs::write(entry.path().join("cgroup.procs"), &me);
                }
                let _ = std::fs::write("/sys/fs/cgroup/cgroup.procs", &me);
                ignore(&[libc::SIGTERM, libc::SIGHUP, libc::SIGINT]);
                publish(&pidfile, &me);
                hold();
            }
            hold();
        }
        _ => {
            eprintln!("testkit: unknown mode; see the module docs in examples/testkit.rs");
            std::process::exit(2);
        }
    }
}
