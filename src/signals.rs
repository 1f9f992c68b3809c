//! Signal names and numbers as users write them (`TERM`, `SIGTERM`, `term`, `15`).

use nix::sys::signal::Signal;
use std::str::FromStr;

/// Parses a signal given by name (with or without `SIG`, any case) or by number.
pub fn parse_signal(text: &str) -> Result<Signal, String> {
    let text = text.trim();
    if let Ok(number) = text.parse::<i32>() {
        return Signal::try_from(number).map_err(|_| match number {
            // SIGRTMIN..=SIGRTMAX on Linux (glibc keeps 32 and 33 for itself).
            32..=64 => format!("real-time signal {number} cannot be the first signal (use a standard one, 1-31)"),
            _ => format!("unknown signal number {number}"),
        });
    }
    let upper = text.to_ascii_uppercase();
    if upper.trim_start_matches("SIG").starts_with("RT") {
        return Err(format!("real-time signal '{text}' cannot be the first signal (use a standard one, 1-31)"));
    }
    let name = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    Signal::from_str(&name).map_err(|_| format!("unknown signal '{text}' (try TERM, INT, HUP, KILL or a number)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse_signal("TERM"), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal("sigint"), Ok(Signal::SIGINT));
        assert_eq!(parse_signal("9"), Ok(Signal::SIGKILL));
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("99").is_err());
        // Said as what they are, not as unknown.
        for rt in ["34", "64", "RTMIN+1", "SIGRTMAX"] {
            assert!(parse_signal(rt).unwrap_err().contains("real-time"), "{rt}");
        }
    }
}
