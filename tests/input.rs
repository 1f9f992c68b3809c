//! Bad and odd input: property tests over the limit parsers (never a panic; the exact value or an error) and
//! over whole command lines (never a panic; bad input is one line and exit 125, and nothing is run), huge values
//! that parse, and report destinations that cannot work.

use crate::harness::*;
use clap::Parser;
use nix::sys::signal::Signal;
use proptest::prelude::*;
use pynish::cli::Cli;
use pynish::signals::parse_signal;
use pynish::units::{format_duration, parse_duration, parse_size};
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::process::{Output, Stdio};
use std::time::Duration;

/// Property tests leave no regression files in the source tree (a failure prints its minimal case instead).
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// floor(`digits` × `unit` / 10^`scale`) with exact decimal arithmetic; None if it does not fit in a u128.
fn exact(digits: &str, unit: u128, scale: usize) -> Option<u128> {
    // Little-endian decimal digits of digits × unit.
    let mut product: Vec<u8> = Vec::new();
    let mut carry: u128 = 0;
    for d in digits.bytes().rev() {
        let acc = u128::from(d - b'0') * unit + carry;
        product.push((acc % 10) as u8);
        carry = acc / 10;
    }
    while carry > 0 {
        product.push((carry % 10) as u8);
        carry /= 10;
    }
    let kept: Vec<u8> = product.into_iter().skip(scale).collect();
    let mut value: u128 = 0;
    for &d in kept.iter().rev() {
        value = value.checked_mul(10)?.checked_add(u128::from(d))?;
    }
    Some(value)
}

/// Duration units as users write them, in nanoseconds.
const TIME_UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("sec", 1_000_000_000),
    ("m", 60_000_000_000),
    ("min", 60_000_000_000),
    ("h", 3_600_000_000_000),
    ("hr", 3_600_000_000_000),
    ("d", 86_400_000_000_000),
    ("w", 604_800_000_000_000),
];

/// Size units as users write them, in bytes.
const SIZE_UNITS: &[(&str, u128)] = &[
    ("B", 1),
    ("KB", 1_000),
    ("kb", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("TB", 1_000_000_000_000),
    ("PB", 1_000_000_000_000_000),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("mib", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
    ("PiB", 1 << 50),
    ("EiB", 1 << 60),
];

/// Whitespace a user (or a script) may leave around numbers and units, Unicode included.
fn space() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["", "", " ", "  ", "\t", "\n", "\u{a0}", "\u{2003}", "\u{3000}"]).prop_map(str::to_owned)
}

/// What parse_duration must answer for `int.frac unit`: the exact value, or an error when it does not fit.
fn expected_duration(int: &str, frac: &str, unit: u128) -> Option<Duration> {
    let nanos = exact(&format!("{int}{frac}"), unit, frac.len())?;
    let secs = u64::try_from(nanos / 1_000_000_000).ok()?;
    Some(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

fn expected_size(int: &str, frac: &str, unit: u128) -> Option<u64> {
    exact(&format!("{int}{frac}"), unit, frac.len())
        .and_then(|b| u64::try_from(b).ok())
        .filter(|&b| b <= i64::MAX as u64)
}

fn number(int: &str, frac: &Option<String>) -> String {
    match frac {
        Some(frac) => format!("{int}.{frac}"),
        None => int.to_owned(),
    }
}

/// Strings that look almost like durations: digits, dots, blanks, letters, a sign, non-ASCII digits and spaces.
const NEAR_DURATION: &str = "[0-9 .\t]{0,12}[a-zA-Zµ٣ \u{a0}.-]{0,6}[0-9 .]{0,6}[a-z]{0,4}";

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn duration_parser_never_panics(text in any::<String>()) {
        let first = parse_duration(&text);
        prop_assert_eq!(first, parse_duration(&text));
    }

    #[test]
    fn duration_parser_never_panics_on_near_misses(text in NEAR_DURATION) {
        let _ = parse_duration(&text);
    }

    #[test]
    fn duration_with_unit_is_exact(
        int in "[0-9]{1,22}",
        frac in proptest::option::of("[0-9]{0,9}"),
        unit in prop::sample::select(TIME_UNITS),
        (a, b, c) in (space(), space(), space()),
    ) {
        let text = format!("{a}{}{b}{}{c}", number(&int, &frac), unit.0);
        let want = expected_duration(&int, frac.as_deref().unwrap_or(""), unit.1);
        match (parse_duration(&text), want) {
            (Ok(got), Some(want)) => prop_assert_eq!(got, want, "{:?}", text),
            (Err(_), None) => {}
            (got, want) => prop_assert!(false, "{:?}: got {:?}, want {:?}", text, got, want),
        }
    }

    #[test]
    fn bare_number_is_seconds(int in "[0-9]{1,21}", frac in proptest::option::of("[0-9]{0,9}"), a in space()) {
        let text = format!("{a}{}{a}", number(&int, &frac));
        let want = expected_duration(&int, frac.as_deref().unwrap_or(""), 1_000_000_000);
        prop_assert_eq!(parse_duration(&text).ok(), want, "{:?}", text);
    }

    #[test]
    fn duration_parts_add_up(
        x in 0u64..1_000_000, ux in prop::sample::select(TIME_UNITS),
        y in 0u64..1_000_000, uy in prop::sample::select(TIME_UNITS),
        gap in prop::sample::select(vec!["", " ", "  "]),
    ) {
        let text = format!("{x}{}{gap}{y}{}", ux.0, uy.0);
        let nanos = u128::from(x) * ux.1 + u128::from(y) * uy.1;
        let want = Duration::new((nanos / 1_000_000_000) as u64, (nanos % 1_000_000_000) as u32);
        prop_assert_eq!(parse_duration(&text), Ok(want), "{:?}", text);
    }

    #[test]
    fn formatted_duration_parses_back_exactly(secs in 0u64..1_000_000, nanos in 0u32..1_000_000_000) {
        let d = Duration::new(secs, nanos);
        let shown = format_duration(d);
        prop_assert_eq!(parse_duration(&shown), Ok(d), "{:?} shown as {:?}", d, shown);
    }

    #[test]
    fn formatted_whole_seconds_parse_back_exactly(secs in any::<u64>()) {
        let d = Duration::from_secs(secs);
        let shown = format_duration(d);
        prop_assert_eq!(parse_duration(&shown), Ok(d), "{:?} shown as {:?}", d, shown);
    }

    #[test]
    fn size_parser_never_panics(text in any::<String>()) {
        let first = parse_size(&text);
        prop_assert_eq!(first, parse_size(&text));
    }

    #[test]
    fn size_parser_never_panics_on_near_misses(text in "[0-9 .\t]{0,12}[a-zA-Zµ \u{a0}.-]{0,5}[0-9]{0,4}") {
        let _ = parse_size(&text);
    }

    #[test]
    fn size_with_unit_is_exact(
        int in "[0-9]{1,20}",
        frac in proptest::option::of("[0-9]{0,9}"),
        unit in prop::sample::select(SIZE_UNITS),
        (a, b, c) in (space(), space(), space()),
    ) {
        let text = format!("{a}{}{b}{}{c}", number(&int, &frac), unit.0);
        let want = expected_size(&int, frac.as_deref().unwrap_or(""), unit.1);
        prop_assert_eq!(parse_size(&text).ok(), want, "{:?}", text);
    }

    #[test]
    fn n_units_round_trip(n in any::<u64>(), unit in prop::sample::select(SIZE_UNITS)) {
        let want = u64::try_from(u128::from(n) * unit.1).ok().filter(|&b| b <= i64::MAX as u64);
        prop_assert_eq!(parse_size(&format!("{n}{}", unit.0)).ok(), want);
    }

    #[test]
    fn signal_parser_never_panics(text in any::<String>()) {
        let _ = parse_signal(&text);
    }

    #[test]
    fn signal_numbers_parse_exactly_when_they_exist(n in -100i32..100, a in space()) {
        // The standard ones, and the real-time ones the C library leaves to programs (34-64 on glibc).
        let real_time = (libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(&n);
        let exists = Signal::try_from(n).is_ok() || real_time;
        prop_assert_eq!(parse_signal(&format!("{a}{n}{a}")).ok().map(|s| s.number()), exists.then_some(n));
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// Digits past the ninth: the value is still exact, rounded down, or an error only when it does not fit.
    #[test]
    fn long_fractions_are_exact(
        int in "[0-9]{1,6}",
        frac in "[0-9]{10,60}",
        tunit in prop::sample::select(TIME_UNITS),
        sunit in prop::sample::select(SIZE_UNITS),
    ) {
        let text = format!("{int}.{frac}{}", tunit.0);
        prop_assert_eq!(parse_duration(&text).ok(), expected_duration(&int, &frac, tunit.1), "{:?}", text);
        let text = format!("{int}.{frac}{}", sunit.0);
        prop_assert_eq!(parse_size(&text).ok(), expected_size(&int, &frac, sunit.1), "{:?}", text);
    }
}

#[test]
fn long_decimals_are_exact() {
    // Trailing zeros, a 1/3 expansion that only its 44th digit rounds up to 1 ns, and exactly one byte in EiB.
    let durations = [
        ("0.4000000000000000000000000d", Duration::from_secs(34_560)),
        ("1.500000000000000000000000000000h", Duration::from_secs(5_400)),
        ("0.00000000001666666666666666666666666666666667m", Duration::from_nanos(1)),
    ];
    for (text, want) in durations {
        assert_eq!(parse_duration(text), Ok(want), "{text:?}");
    }
    let sizes = [
        ("1.000000000000000000000000000000GB", 1_000_000_000),
        ("0.000000000000000000867361737988403547205962240695953369140625EiB", 1),
    ];
    for (text, want) in sizes {
        assert_eq!(parse_size(text), Ok(want), "{text:?}");
    }
}

#[test]
fn every_signal_parses_by_its_names_and_number() {
    for signal in Signal::iterator() {
        let name = signal.as_str();
        let short = name.trim_start_matches("SIG");
        for text in
            [name.to_owned(), name.to_lowercase(), short.to_owned(), short.to_lowercase(), format!(" {short}\t")]
        {
            assert_eq!(parse_signal(&text), Ok(signal.into()), "{text:?}");
        }
        assert_eq!(parse_signal(&(signal as i32).to_string()), Ok(signal.into()));
    }
}

/// Command-line tokens: every flag, good and bad values, unicode, huge numbers, stray words and separators.
fn token() -> impl Strategy<Value = OsString> {
    const FLAGS: &str = "-w --wall-time -c --cpu-time -m --memory --memory-kind -p --processes -g --grace -s --signal \
        --preserve-status --json --report --report-fd --label -q --quiet -v --verbose --backend check -- - \
        --wall-time= -w1s --bogus -x";
    // '|'-separated, so that the empty string, blanks and "1h 30m" are values too.
    const VALUES: &str = "1s|0|0s|1.5h|250ms|-1|1e9|99999999999999999999999h|18446744073709551615|1h 30m|500MB|\
        1.5GiB|12XB|TERM|KILL|99|sigint|resident|virtual|auto|proc|cgroup1|cgroup2|nope|| |٣s|１s|∞|NaN|3|65536|\
        -5MB|1..5s";
    let flags = prop::sample::select(FLAGS.split_whitespace().collect::<Vec<_>>()).prop_map(OsString::from);
    let values = prop::sample::select(VALUES.split('|').collect::<Vec<_>>()).prop_map(OsString::from);
    let junk = any::<String>().prop_map(OsString::from);
    let raw = prop::collection::vec(any::<u8>(), 0..6).prop_map(OsString::from_vec);
    prop_oneof![4 => flags, 4 => values, 1 => junk, 1 => raw]
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn cli_parser_never_panics(tokens in prop::collection::vec(token(), 0..8), command in any::<bool>()) {
        let mut argv: Vec<OsString> = vec!["pynish".into()];
        argv.extend(tokens);
        if command {
            argv.extend(["--".into(), "true".into()]);
        }
        match Cli::try_parse_from(&argv) {
            Ok(cli) => {
                // Settings are built from any parsed command line without a panic (only file checks fail).
                let _ = pynish::settings::Settings::from_cli(cli);
            }
            Err(error) => {
                let rendered = error.render().to_string();
                prop_assert!(rendered.lines().any(|l| !l.trim().is_empty()), "empty error for {:?}", argv);
            }
        }
    }
}

/// Runs pynish with `args` and then `-- sh -c ': > MARKER'` (or `args` alone); returns its output and whether the
/// command ran.
fn run_argv(args: &[OsString], with_command: bool) -> (Output, bool) {
    let scene = Scene::new("argv");
    let marker = scene.path("ran");
    let mut cmd = pynish_cmd(&scene.tag);
    cmd.current_dir(scene.dir.path()).args(args);
    if with_command {
        cmd.args(["--", "sh", "-c", ": > \"$1\"", "sh"]).arg(&marker);
    }
    let child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let out = output_timeout(child, PATIENCE).expect("pynish ended");
    (out, marker.exists())
}

fn without_nul(arg: OsString) -> OsString {
    OsString::from_vec(arg.into_vec().into_iter().filter(|&b| b != 0).collect())
}

/// The promise for any command line: no panic; bad input is exit 125 with one line on stderr and nothing run.
fn check_outcome(args: &[OsString], out: &Output, ran: bool) -> Result<(), TestCaseError> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let code = shell_code(out.status);
    prop_assert!(!stderr.contains("panicked"), "{:?}: pynish panicked: {}", args, stderr);
    // A random command line may also set a limit the command then hits (e.g. `-w 250ms` on a loaded machine).
    prop_assert!([0, 121, 122, 123, 124, 125, 126, 127].contains(&code), "{:?}: exit {} ({})", args, code, stderr);
    if code == 125 {
        prop_assert!(!ran, "{:?}: exit 125 but the command ran", args);
        let lines: Vec<&str> = stderr.lines().collect();
        prop_assert!(lines.len() == 1 && lines[0].starts_with("pynish: "), "{:?}: not one line: {:?}", args, stderr);
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(32))]

    #[test]
    fn any_command_line_ends_cleanly(tokens in prop::collection::vec(token(), 0..6), command in any::<bool>()) {
        // exec cannot pass a NUL byte (every other byte goes through); -v lines would blur the one-line check.
        let mut args: Vec<OsString> = tokens.into_iter().map(without_nul).collect();
        args.retain(|a| a != "-v" && a != "--verbose");
        let (out, ran) = run_argv(&args, command);
        check_outcome(&args, &out, ran)?;
    }
}

#[test]
fn bad_input_is_one_line_and_exit_125_and_nothing_runs() {
    let cases: &[&[&str]] = &[
        &["--wall-time", "5x"],
        &["--wall-time", "0"],
        &["--wall-time", ""],
        &["--cpu-time", "-1s"],
        &["--memory", "12XB"],
        &["--memory", "0"],
        &["--memory", "99999999999999999999TB"],
        &["--processes", "0"],
        &["--processes", "-3"],
        &["--signal", "NOPE"],
        &["--signal", "0"],
        &["--backend", "docker"],
        &["--memory-kind", "swap"],
        &["--report-fd", "-1"],
        &["--report-fd", "987"],
        &["--bogus"],
        &["--quiet", "--verbose"],
        &["--grace", "1 fortnight"],
    ];
    for args in cases {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        let (out, ran) = run_argv(&args, true);
        assert_eq!(shell_code(out.status), 125, "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        check_outcome(&args, &out, ran).unwrap();
    }
    // No command at all, and a label that is not UTF-8.
    let (out, ran) = run_argv(&[], false);
    assert_eq!(shell_code(out.status), 125);
    check_outcome(&[], &out, ran).unwrap();
    let label = vec![OsString::from("--label"), OsString::from_vec(vec![0xff, 0xfe])];
    let (out, ran) = run_argv(&label, true);
    check_outcome(&label, &out, ran).unwrap();
}

#[test]
fn huge_limits_are_accepted_or_refused_never_a_panic() {
    // Values the parsers accept (they fit in a Duration) but no clock can add to "now".
    let max = u64::MAX.to_string();
    let cases: Vec<Vec<String>> = vec![
        vec!["--wall-time".into(), max.clone()],
        vec!["--wall-time".into(), "292471208678years".into()],
        vec!["--cpu-time".into(), max.clone()],
        vec!["--cpu-time".into(), (u64::MAX - 1).to_string()],
        vec!["--wall-time".into(), "200ms".into(), "--grace".into(), max.clone()],
        vec!["--cpu-time".into(), "1h".into(), "--grace".into(), max.clone()],
    ];
    for args in cases {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        let scene = Scene::new("huge");
        let mut cmd = pynish_cmd(&scene.tag);
        cmd.args(&args).args(["--", "sleep", "1"]);
        let (out, _) = scene.run(&mut cmd, PATIENCE);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let code = shell_code(out.status);
        assert!(!stderr.contains("panicked"), "{args:?}: pynish panicked (exit {code}): {stderr}");
        assert!([0, 124, 125].contains(&code), "{args:?}: exit {code}: {stderr}");
        assert_run_gone(&scene.tag, &[]);
    }
}

#[test]
fn report_in_a_missing_directory_fails_before_the_command_starts() {
    let scene = Scene::new("report-dir");
    let args: Vec<OsString> = vec!["--report".into(), scene.path("no/such/dir/report.json").into()];
    let (out, ran) = run_argv(&args, true);
    assert_eq!(shell_code(out.status), 125, "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!ran, "the command ran although the report could not be written");
    check_outcome(&args, &out, ran).unwrap();
}

#[test]
fn report_path_that_is_a_directory_fails_before_the_command_starts() {
    let scene = Scene::new("report-is-dir");
    let args: Vec<OsString> = vec!["--report".into(), scene.dir.path().into()];
    let (out, ran) = run_argv(&args, true);
    assert_eq!(shell_code(out.status), 125, "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!ran);
    check_outcome(&args, &out, ran).unwrap();
}

#[test]
fn report_fd_open_only_for_reading_fails_before_the_command_starts() {
    // `--report-fd 5 5<file` is a typo away from `5>file`: the descriptor is open, but the report cannot be
    // written to it. That is bad input, to be refused before the command runs (which may take hours).
    let scene = Scene::new("report-fd-ro");
    let marker = scene.path("ran");
    let readable = std::fs::File::open("/dev/null").unwrap();
    let raw = std::os::fd::AsRawFd::as_raw_fd(&readable);
    let mut cmd = pynish_cmd(&scene.tag);
    close_extra_fds(&mut cmd, &[5]);
    // SAFETY: dup2 is async-signal-safe; `raw` stays open in the parent until spawn returns.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            if libc::dup2(raw, 5) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.args(["--report-fd", "5", "--", "sh", "-c", ": > \"$1\"", "sh"]).arg(&marker);
    let (out, _) = scene.run(&mut cmd, PATIENCE);
    drop(readable);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(shell_code(out.status), 125, "{stderr}");
    assert!(!marker.exists(), "the command ran although its report could not be written: {stderr}");
}
