//! Parsing of human durations and sizes for the command line.
//!
//! `humantime` knows the unit names but rejects decimals (`1.5h`), and `bytesize` computes through `f64`,
//! which saturates silently on overflow (`99999999TB`). Both are used here only to name units; the number
//! itself is scaled with exact integer arithmetic, so every accepted value is the exact one the user wrote
//! (rounded down to a nanosecond or a byte), and every value that does not fit is an error, never a clamp.

use std::time::Duration;

/// Splits `"1.5 GiB"` into the decimal number and the unit that follows it.
fn split_number(text: &str) -> Result<(&str, &str), String> {
    let end = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(end);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return Err(format!("expected a number at '{text}'"));
    }
    Ok((number, unit.trim_start()))
}

/// `number × unit` with exact integer arithmetic; the fraction is rounded down.
fn scale(number: &str, unit: u128) -> Option<u128> {
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    let int = int.trim_start_matches('0');
    let int: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    // Horner's rule from the last digit: t = ⌊(digit × unit + t) / 10⌋ is exactly ⌊0.d₁d₂…dₙ × unit⌋ for any
    // number of digits, and never exceeds 10 × unit on the way.
    let fraction =
        frac.bytes().rev().try_fold(0u128, |t, digit| Some((u128::from(digit.checked_sub(b'0')?) * unit + t) / 10))?;
    int.checked_mul(unit)?.checked_add(fraction)
}

/// Parses a duration: `250ms`, `7s`, `1.5h`, `1h 30m`, or a bare number of seconds (`2`, `0.5`). Decimals with a
/// unit are accepted because humantime refuses them (`1.5h` is the headline example), bare numbers because GNU
/// timeout and pynisher take seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    let mut rest = text;
    let mut nanos: u128 = 0;
    while !rest.is_empty() {
        let (number, after) = split_number(rest)?;
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.' || c.is_whitespace()).unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let unit_nanos = if unit.is_empty() {
            if rest != text {
                return Err(format!("missing unit after '{number}' in '{text}'"));
            }
            1_000_000_000 // a bare number means seconds, as in GNU timeout and pynisher
        } else {
            humantime::parse_duration(&format!("1{unit}"))
                .map_err(|_| format!("unknown time unit '{unit}' in '{text}' (use ms, s, m, h, d, w)"))?
                .as_nanos()
        };
        nanos = scale(number, unit_nanos)
            .and_then(|n| nanos.checked_add(n))
            .ok_or_else(|| format!("duration '{text}' is too large"))?;
        rest = next.trim_start();
    }
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| format!("duration '{text}' is too large"))?;
    Ok(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

/// Parses a byte size: `500MB` (500×10⁶), `1.5GiB` (1.5×2³⁰), `4096` (bytes), exactly as `--help` and the man page
/// say, so that a limit is never off by the 5 % between MB and MiB.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty size".into());
    }
    let (number, unit) = split_number(text)?;
    let unit_bytes: u128 = if unit.is_empty() {
        1
    } else {
        format!("1{unit}")
            .parse::<bytesize::ByteSize>()
            .map_err(|_| format!("unknown size unit '{unit}' in '{text}' (use B, KB, MB, GB, KiB, MiB, GiB, ...)"))?
            .as_u64()
            .into()
    };
    scale(number, unit_bytes)
        .and_then(|bytes| u64::try_from(bytes).ok())
        .filter(|&bytes| bytes <= i64::MAX as u64) // the kernel's limit files hold signed 64-bit values
        .ok_or_else(|| format!("size '{text}' is too large"))
}

/// Formats a size the way a user would have written it: the largest unit that divides it exactly (`100MB`,
/// `1GiB`), else bytes.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 8] = [
        (1 << 40, "TiB"),
        (1_000_000_000_000, "TB"),
        (1 << 30, "GiB"),
        (1_000_000_000, "GB"),
        (1 << 20, "MiB"),
        (1_000_000, "MB"),
        (1 << 10, "KiB"),
        (1_000, "kB"),
    ];
    match UNITS.iter().find(|(unit, _)| bytes >= *unit && bytes.is_multiple_of(*unit)) {
        Some((unit, name)) => format!("{}{name}", bytes / unit),
        None if bytes == 1 => "1 byte".into(),
        None => format!("{bytes} bytes"),
    }
}

/// Formats a duration the way a user would write it (`7s`, `1.5s`, `250ms`), so that a message names the limit
/// as it was given.
pub fn format_duration(d: Duration) -> String {
    if d >= Duration::from_secs(1) && d.subsec_nanos() != 0 {
        format!("{}s", d.as_secs_f64())
    } else {
        humantime::format_duration(d).to_string()
    }
}

/// `--cpus`: a list as `taskset -c` takes it (`0,2-3`), sorted, each CPU once. Read here, not by the C
/// library's `CPU_SET`, so that a number past the mask is bad input rather than silently dropped.
pub fn parse_cpu_list(text: &str) -> Result<Vec<usize>, String> {
    /// Far above any machine's CPU count, and `cpu_set_t` ends at 1024: `Limits` checks each CPU is allowed.
    const MOST: usize = 1 << 16;
    let bad = || format!("'{text}' is not a CPU list such as 0,2-3");
    let mut cpus = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let (first, last) = part.split_once('-').unwrap_or((part, part));
        let first: usize = first.trim().parse().map_err(|_| bad())?;
        let last: usize = last.trim().parse().map_err(|_| bad())?;
        if first > last || last >= MOST {
            return Err(bad());
        }
        cpus.extend(first..=last);
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// A sorted CPU list as taskset and `/proc/PID/status` print it (`0-1,3`).
pub fn format_cpu_list(cpus: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        parts.push(if i == j { cpus[i].to_string() } else { format!("{}-{}", cpus[i], cpus[j]) });
        i = j + 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_read_and_print_as_taskset_does() {
        assert_eq!(parse_cpu_list("0,2-3"), Ok(vec![0, 2, 3]));
        assert_eq!(parse_cpu_list("3,1,1-2"), Ok(vec![1, 2, 3]));
        assert_eq!(parse_cpu_list(" 1 "), Ok(vec![1]));
        for bad in ["2-1", "a", "", "1,", "-1", "0-65536", "1-2-3"] {
            assert!(parse_cpu_list(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(format_cpu_list(&[0, 1, 3, 5, 6, 7]), "0-1,3,5-7");
        assert_eq!(format_cpu_list(&[1]), "1");
        assert_eq!(format_cpu_list(&[]), "");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("7s"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration(" 0.5 "), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5 s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration(".25s"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        for bad in ["", "-1s", "1x", "s", "1..5s", "1s 2", "99999999999999999999999h", "1.5.h", "٣s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn sizes_are_shown_as_written() {
        assert_eq!(format_size(100_000_000), "100MB");
        assert_eq!(format_size(1 << 30), "1GiB");
        assert_eq!(format_size(1536 << 20), "1536MiB");
        assert_eq!(format_size(4096), "4KiB");
        assert_eq!(format_size(1234), "1234 bytes");
        assert_eq!(format_size(1), "1 byte", "not \"1 bytes\"");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("500MB"), Ok(500_000_000));
        assert_eq!(parse_size("500MiB"), Ok(500 << 20));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("100 MB"), Ok(100_000_000));
        for bad in ["", "12XB", "99999999TB", "-5MB", "MB", "1.2.3MB", "1e9"] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
