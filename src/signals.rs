//! Signal names and numbers as users write them (`TERM`, `SIGTERM`, `term`, `15`, `RTMIN+6`, `40`), and `Sig`,
//! a signal number known to be valid, standard or real-time.
//!
//! nix's `Signal` names only the standard signals (1-31), so a real-time one (`--signal 40`, or a command that
//! died of one) cannot be carried in it: `Sig` carries both, names them as bash's `kill -l` does (`SIGRTMIN+6`,
//! `SIGRTMAX-2`, numbered from the C library's `SIGRTMIN`, 34 on glibc, which keeps 32 and 33 for its threads),
//! and sends itself with kill(2).

use nix::sys::signal::Signal;
use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

/// A valid signal number: a standard signal or a real-time one in the C library's `SIGRTMIN..=SIGRTMAX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Sig(i32);

impl Sig {
    /// SIGKILL, the last signal.
    pub const KILL: Sig = Sig(libc::SIGKILL);
    /// SIGCONT, after the first signal, so that a stopped member can act on it.
    pub const CONT: Sig = Sig(libc::SIGCONT);
    /// SIGSTOP, which no process can handle (nor can it SIGKILL).
    pub const STOP: Sig = Sig(libc::SIGSTOP);
    /// SIGTERM, the default first signal.
    pub const TERM: Sig = Sig(libc::SIGTERM);
    /// SIGXCPU, RLIMIT_CPU's own signal.
    pub const XCPU: Sig = Sig(libc::SIGXCPU);
    /// SIGURG, the soft limits' default warning: ignored unless a command listens for it.
    pub const URG: Sig = Sig(libc::SIGURG);
    /// SIGXFSZ, RLIMIT_FSIZE's own signal.
    pub const XFSZ: Sig = Sig(libc::SIGXFSZ);

    /// The signal numbered `number`, if there is one (a real-time number counts only inside the C library's range).
    pub fn from_number(number: i32) -> Option<Sig> {
        let (min, max) = real_time_range();
        (Signal::try_from(number).is_ok() || (min..=max).contains(&number)).then_some(Sig(number))
    }

    /// Its number, as kill(2) takes it.
    pub fn number(self) -> i32 {
        self.0
    }

    /// Its name, as `kill -l` prints it: `SIGTERM`, `SIGRTMIN`, `SIGRTMIN+6`, `SIGRTMAX-2`, `SIGRTMAX`.
    pub fn name(self) -> Cow<'static, str> {
        if let Ok(standard) = Signal::try_from(self.0) {
            return Cow::Borrowed(standard.as_str());
        }
        let (min, max) = real_time_range();
        // bash's rule: the lower half counts up from SIGRTMIN, the upper half down from SIGRTMAX.
        Cow::Owned(match self.0 {
            n if n == min => "SIGRTMIN".to_owned(),
            n if n == max => "SIGRTMAX".to_owned(),
            n if n - min <= (max - min) / 2 => format!("SIGRTMIN+{}", n - min),
            n => format!("SIGRTMAX-{}", max - n),
        })
    }

    /// Sends it to `pid` (a process; a group when negative, never 0 or -1, which mean "all"); true if delivered.
    pub fn send(self, pid: i32) -> bool {
        // SAFETY: kill(2) takes plain integers; a pid of 0 or -1 (pynish's own group, every process) is refused.
        pid != 0 && pid != -1 && unsafe { libc::kill(pid, self.0) } == 0
    }

    /// Sends it to process group `group` (> 1); true if delivered.
    pub fn send_to_group(self, group: i32) -> bool {
        group > 1 && self.send(-group)
    }
}

impl From<Signal> for Sig {
    fn from(signal: Signal) -> Sig {
        Sig(signal as i32)
    }
}

impl fmt::Display for Sig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl FromStr for Sig {
    type Err = String;

    fn from_str(text: &str) -> Result<Sig, String> {
        parse_signal(text)
    }
}

/// The C library's real-time signals, `SIGRTMIN..=SIGRTMAX` (34..=64 on glibc).
#[cfg(target_os = "linux")]
fn real_time_range() -> (i32, i32) {
    (libc::SIGRTMIN(), libc::SIGRTMAX())
}

/// No real-time signals elsewhere (an empty range).
#[cfg(not(target_os = "linux"))]
fn real_time_range() -> (i32, i32) {
    (1, 0)
}

/// Parses a signal given by name (with or without `SIG`, any case) or by number.
pub fn parse_signal(text: &str) -> Result<Sig, String> {
    let text = text.trim();
    let (min, max) = real_time_range();
    if let Ok(number) = text.parse::<i32>() {
        return Sig::from_number(number).ok_or_else(|| match number {
            n if n > 31 && n < min => {
                format!("signal {number} is kept by the C library for itself (real-time signals are {min}-{max})")
            }
            _ => format!("unknown signal number {number}"),
        });
    }
    let upper = text.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    if bare.starts_with("RT") {
        let real_time = match (bare.strip_prefix("RTMIN"), bare.strip_prefix("RTMAX")) {
            (Some(rest), _) => offset(rest, '+').map(|k| min + k),
            (_, Some(rest)) => offset(rest, '-').map(|k| max - k),
            _ => None,
        };
        return real_time.filter(|n| (min..=max).contains(n)).map(Sig).ok_or_else(|| {
            format!("unknown real-time signal '{text}' (RTMIN to RTMAX, {min}-{max}: RTMIN+6, RTMAX-2, ...)")
        });
    }
    let name = format!("SIG{bare}");
    Signal::from_str(&name)
        .map(Sig::from)
        .map_err(|_| format!("unknown signal '{text}' (try TERM, INT, HUP, KILL, RTMIN+1 or a number)"))
}

/// The `+N` (or `-N`) after `RTMIN` (`RTMAX`): 0 when there is none, `None` when it is not `sign` and digits.
fn offset(rest: &str, sign: char) -> Option<i32> {
    if rest.is_empty() {
        return Some(0);
    }
    let digits = rest.strip_prefix(sign)?;
    let valid = !digits.is_empty() && digits.len() < 4 && digits.bytes().all(|b| b.is_ascii_digit());
    valid.then(|| digits.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse_signal("TERM"), Ok(Sig::TERM));
        assert_eq!(parse_signal("sigint"), Ok(Signal::SIGINT.into()));
        assert_eq!(parse_signal("9"), Ok(Sig::KILL));
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("-1").is_err());
        assert!(parse_signal("99").is_err());
    }

    #[test]
    fn real_time_signals_by_name_and_number() {
        let (min, max) = real_time_range();
        assert_eq!(parse_signal("RTMIN+6").unwrap().number(), min + 6);
        assert_eq!(parse_signal("sigrtmax-2").unwrap().number(), max - 2);
        assert_eq!(parse_signal("SIGRTMIN").unwrap().number(), min);
        assert_eq!(parse_signal("RTMAX").unwrap().number(), max);
        assert_eq!(parse_signal(&(min + 6).to_string()).unwrap().name(), "SIGRTMIN+6");
        for bad in ["RTMIN+99", "RTMAX-99", "RTMIN-1", "RTMAX+1", "RTMIN+", "RTMIN++5", "RTMIN6", "RTFOO", "RTMIN+x"] {
            assert!(parse_signal(bad).is_err(), "{bad}");
        }
        assert!(parse_signal(&(max + 1).to_string()).is_err());
        // Kept by glibc for its threads, and said so.
        assert!(parse_signal("32").unwrap_err().contains("C library"));
    }

    #[test]
    fn names_follow_kill_l() {
        // Every name parses back to its number, as `kill -l` lists them.
        let (min, max) = real_time_range();
        for n in (1..=31).chain(min..=max) {
            if let Some(sig) = Sig::from_number(n) {
                assert_eq!(parse_signal(&sig.name()), Ok(sig), "{n}");
            }
        }
        assert_eq!(Sig::from_number(min + 15).unwrap().name(), "SIGRTMIN+15");
        assert_eq!(Sig::from_number(min + 16).unwrap().name(), "SIGRTMAX-14");
        assert_eq!(Sig::from_number(max - 1).unwrap().name(), "SIGRTMAX-1");
        assert_eq!(Sig::TERM.name(), "SIGTERM");
    }

    #[test]
    fn never_to_everyone() {
        assert!(!Sig::TERM.send(0));
        assert!(!Sig::TERM.send(-1));
        assert!(!Sig::TERM.send_to_group(1));
    }
}
