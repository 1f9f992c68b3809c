//! `pynish plot FILE [-o OUT.svg]`: draws a `--timeline` file as one SVG: memory, CPU time and processes over
//! time in three panels sharing the time axis, each limit as a dashed red line, each event as a vertical line
//! named at the top. 960×720 pixels, so it fits a CI artifact page; plain SVG text, no fonts embedded.
//!
//! It reads the file only (any pynish's, any machine's); a last line cut short (pynish killed mid-write) is
//! skipped, any other line that is not JSON is an error.

use anyhow::{Context, Result, anyhow, bail};
use plotters::prelude::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

const SIZE: (u32, u32) = (960, 720);
const FONT: &str = "sans-serif";
const LIMIT: RGBColor = RGBColor(200, 30, 30);
const MEMORY: RGBColor = RGBColor(30, 90, 200);
const CPU: RGBColor = RGBColor(20, 140, 60);
const SYSTEM: RGBColor = RGBColor(150, 200, 150);
const PROCESSES: RGBColor = RGBColor(120, 60, 160);
/// Event names: their size, and how many rows they stagger over above the top panel.
const EVENT_FONT: u32 = 11;
const EVENT_ROWS: i32 = 4;
/// The largest number drawn: far above any real run's figure, and far enough below `f64::MAX`
/// that an axis (the top value plus a margin) stays finite. A file may hold any number (edited, from another
/// program); an axis reaching infinity sends the plotting library's tick search into an endless loop.
const PLOTTABLE: f64 = 1e300;

/// `value` as it can be drawn: within `0..=PLOTTABLE`. Every figure of a timeline (time, CPU, memory, counts) is
/// at least 0, and the axes start there: a point far outside them overflows the library's pixel arithmetic.
fn plottable(value: f64) -> f64 {
    if value.is_nan() { 0.0 } else { value.clamp(0.0, PLOTTABLE) }
}

/// One sample line.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Point {
    t: f64,
    user: f64,
    system: f64,
    memory: f64,
    processes: f64,
}

/// One event line: when, and its name as drawn (`SIGTERM → 2`, `oom_kill`, `exit 0`).
#[derive(Debug, Clone, PartialEq)]
struct Mark {
    t: f64,
    kind: String,
    label: String,
}

#[derive(Debug, Default)]
struct Timeline {
    header: Value,
    points: Vec<Point>,
    marks: Vec<Mark>,
    end: Option<Value>,
}

/// Reads and checks a timeline file's text.
fn parse(text: &str) -> Result<Timeline> {
    let mut timeline = Timeline::default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    for (i, line) in lines.iter().enumerate() {
        let value: Value = match serde_json::from_str(line) {
            Ok(value) => value,
            Err(_) if i + 1 == lines.len() && i > 0 => break, // cut short by a pynish that was killed
            Err(e) => bail!("line {}: not a timeline line ({e})", i + 1),
        };
        if i == 0 {
            if value.get("timeline").and_then(Value::as_u64).is_none() {
                bail!("line 1: not a pynish timeline (no header)");
            }
            timeline.header = value;
            continue;
        }
        let number = |key: &str| value.get(key).and_then(Value::as_f64).map(plottable);
        let t = number("t").with_context(|| format!("line {}: no t", i + 1))?;
        match value.get("event").and_then(Value::as_str) {
            Some(event) => {
                if event == "end" {
                    timeline.end = Some(value.clone());
                }
                timeline.marks.push(Mark { t, kind: event.to_string(), label: label(event, &value) });
            }
            None => timeline.points.push(Point {
                t,
                user: number("cpu_user_s").unwrap_or(0.0),
                system: number("cpu_system_s").unwrap_or(0.0),
                memory: number("memory_bytes").unwrap_or(0.0),
                processes: number("processes").unwrap_or(0.0),
            }),
        }
    }
    if lines.is_empty() {
        bail!("the file is empty");
    }
    Ok(timeline)
}

/// How an event is named on the picture.
fn label(event: &str, value: &Value) -> String {
    let text = |key: &str| value.get(key).and_then(Value::as_str).unwrap_or("?").to_string();
    let count = value.get("processes").and_then(Value::as_u64).unwrap_or(0);
    match event {
        "signal" => format!("{} → {count}", text("signal")),
        "sigkill" => format!("SIGKILL → {count}"),
        "exit" => match value.get("code").and_then(Value::as_i64) {
            Some(code) => format!("exit {code}"),
            None => format!("exit {}", text("signal")),
        },
        "end" => format!("end: {}", text("verdict")),
        other => other.replace('_', " "),
    }
}

/// A unit for bytes that keeps the axis numbers short: (divisor, name).
fn byte_unit(max: f64) -> (f64, &'static str) {
    match max {
        m if m >= 10e9 => (1e9, "GB"),
        m if m >= 10e6 => (1e6, "MB"),
        m if m >= 10e3 => (1e3, "kB"),
        _ => (1.0, "bytes"),
    }
}

/// Where the SVG goes by default: FILE with the extension `.svg`.
pub fn default_output(file: &Path) -> PathBuf {
    file.with_extension("svg")
}

/// `pynish plot`.
pub fn run(file: &Path, output: Option<&Path>) -> Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let timeline = parse(&text).with_context(|| format!("{}", file.display()))?;
    let out = output.map_or_else(|| default_output(file), Path::to_path_buf);
    if out == file {
        bail!("the SVG would replace the timeline {}: name another with -o", file.display());
    }
    let svg = draw(&timeline)?;
    std::fs::write(&out, svg).with_context(|| format!("cannot write {}", out.display()))?;
    crate::say(format_args!("pynish: wrote {}", out.display()));
    Ok(())
}

fn failed<E: std::fmt::Debug>(error: E) -> anyhow::Error {
    anyhow!("cannot draw: {error:?}")
}

/// The picture's title: the command, the verdict, the backend.
fn title(timeline: &Timeline) -> String {
    let header = &timeline.header;
    let command: Vec<&str> = header["command"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let mut command = command.join(" ");
    if command.chars().count() > 60 {
        command = command.chars().take(57).collect::<String>() + "...";
    }
    let verdict = timeline.end.as_ref().and_then(|e| e["verdict"].as_str()).unwrap_or("unfinished");
    let backend = header["backend"].as_str().unwrap_or("?");
    match header["label"].as_str() {
        Some(label) => format!("{label}: {command} — {verdict} ({backend})"),
        None => format!("{command} — {verdict} ({backend})"),
    }
}

/// A named, coloured line of (t, value) points.
type Series = (&'static str, RGBColor, Vec<(f64, f64)>);

/// One panel: a series (or two) against time, a limit line, the event lines.
struct Panel {
    name: String,
    lines: Vec<Series>,
    limit: Option<(f64, String)>,
    /// Counts: no decimals on the axis.
    integer: bool,
}

fn draw(timeline: &Timeline) -> Result<String> {
    let limits = &timeline.header["limits"];
    let limit = |key: &str| limits.get(key).and_then(Value::as_f64).map(plottable);
    let last = timeline.points.iter().map(|p| p.t).chain(timeline.marks.iter().map(|m| m.t)).fold(0.0, f64::max);
    let mut x_max = (last * 1.02).max(0.1);
    // A wall-time limit just past the end is worth seeing (the run stopped short of it); far past, it would
    // squash the picture.
    let wall = limit("wall_time_s");
    if let Some(wall) = wall.filter(|&w| w > x_max && w <= last * 1.5) {
        x_max = wall * 1.02;
    }

    let peak = timeline.points.iter().map(|p| p.memory).fold(limit("memory_bytes").unwrap_or(0.0), f64::max);
    let (unit, unit_name) = byte_unit(peak);
    let memory = Panel {
        name: format!("memory ({unit_name})"),
        lines: vec![("memory", MEMORY, timeline.points.iter().map(|p| (p.t, p.memory / unit)).collect())],
        limit: limit("memory_bytes").map(|m| (m / unit, format!("--memory {}", short(m / unit, unit_name)))),
        integer: false,
    };
    let cpu = Panel {
        name: "CPU time (s)".into(),
        lines: vec![
            ("user + system", CPU, timeline.points.iter().map(|p| (p.t, p.user + p.system)).collect()),
            ("system", SYSTEM, timeline.points.iter().map(|p| (p.t, p.system)).collect()),
        ],
        limit: limit("cpu_time_s").map(|c| (c, format!("--cpu-time {}", short(c, "s")))),
        integer: false,
    };
    let processes = Panel {
        name: "processes".into(),
        lines: vec![("processes", PROCESSES, timeline.points.iter().map(|p| (p.t, p.processes)).collect())],
        limit: limit("processes").map(|p| (p, format!("--processes {p}"))),
        integer: true,
    };

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(failed)?;
        let root = root.titled(&title(timeline), (FONT, 18)).map_err(failed)?;
        let (top, rest) = root.split_vertically(44.percent_height());
        let (middle, bottom) = rest.split_vertically(55.percent_height());
        for (area, panel, is_top, is_bottom) in
            [(&top, &memory, true, false), (&middle, &cpu, false, false), (&bottom, &processes, false, true)]
        {
            draw_panel(area, panel, timeline, x_max, wall, is_top, is_bottom)?;
        }
        root.present().map_err(failed)?;
    }
    Ok(svg)
}

/// `100`, `1.5`: a limit's value without trailing zeros, with its unit.
fn short(value: f64, unit: &str) -> String {
    let text = format!("{value:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text} {unit}")
}

fn draw_panel(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    panel: &Panel,
    timeline: &Timeline,
    x_max: f64,
    wall: Option<f64>,
    names_events: bool,
    time_axis: bool,
) -> Result<()> {
    let highest = panel.lines.iter().flat_map(|(_, _, points)| points.iter().map(|p| p.1)).fold(0.0, f64::max);
    let top = highest.max(panel.limit.as_ref().map_or(0.0, |l| l.0));
    // Counts get whole numbers on their axis, one label per step at most.
    let (y_max, y_labels) = if panel.integer {
        let y_max = (top * 1.12).ceil().max(top + 1.0);
        (y_max, y_max.min(4.0) as usize + 1)
    } else {
        ((top * 1.12).max(0.01), 5)
    };
    let mut chart = ChartBuilder::on(area)
        .margin_left(10)
        .margin_right(20)
        .margin_top(if names_events { 8 + EVENT_ROWS * (EVENT_FONT as i32 + 1) } else { 6 })
        .x_label_area_size(if time_axis { 36 } else { 18 })
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(failed)?;
    // Text drawn on `area` is placed in its own pixels, not the whole picture's.
    let base = area.get_base_pixel();
    let coords = chart.as_coord_spec().clone();
    let pixel = move |at: &(f64, f64)| {
        let (x, y) = plotters::coord::CoordTranslate::translate(&coords, at);
        (x - base.0, y - base.1)
    };
    let mut mesh = chart.configure_mesh();
    let decimals = match y_max {
        _ if panel.integer => 0,
        y if y >= 10.0 => 0,
        y if y >= 1.0 => 1,
        _ => 2,
    };
    let y_format = move |v: &f64| format!("{v:.decimals$}");
    let x_decimals = if x_max >= 10.0 { 0 } else { 1 };
    let x_format = move |v: &f64| format!("{v:.x_decimals$}");
    mesh.y_desc(panel.name.as_str())
        .y_labels(y_labels)
        .y_label_formatter(&y_format)
        .x_labels(10)
        .x_label_formatter(&x_format)
        .light_line_style(WHITE.mix(0.0));
    if time_axis {
        mesh.x_desc("seconds since start");
    }
    mesh.draw().map_err(failed)?;

    for (name, color, points) in &panel.lines {
        chart
            .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))
            .map_err(failed)?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
    }
    if let Some((value, text)) = &panel.limit {
        let style = LIMIT.stroke_width(1);
        chart.draw_series(DashedLineSeries::new([(0.0, *value), (x_max, *value)], 6, 4, style)).map_err(failed)?;
        // Named just above its line, at the left.
        let (x, y) = pixel(&(0.0, *value));
        let style = TextStyle::from((FONT, 12).into_font()).color(&LIMIT);
        area.draw(&Text::new(text.clone(), (x + 6, y - 14), style)).map_err(failed)?;
    }
    if let Some(wall) = wall.filter(|&w| w <= x_max) {
        let style = LIMIT.stroke_width(1);
        chart.draw_series(DashedLineSeries::new([(wall, 0.0), (wall, y_max)], 6, 4, style)).map_err(failed)?;
    }
    let right = pixel(&(x_max, 0.0)).0;
    let mut named: Vec<i32> = Vec::new(); // where the names drawn so far start, to stagger close ones
    // The events, and the wall-time limit's line named like one.
    let wall_mark = wall.filter(|&w| w <= x_max).map(|w| Mark {
        t: w,
        kind: "wall_time".into(),
        label: format!("--wall-time {}", short(w, "s")),
    });
    for mark in timeline.marks.iter().filter(|m| m.kind != "end").chain(&wall_mark) {
        let color = event_color(&mark.kind);
        if mark.kind != "wall_time" {
            let line = PathElement::new(vec![(mark.t, 0.0), (mark.t, y_max)], color.mix(0.7));
            chart.draw_series(std::iter::once(line)).map_err(failed)?;
        }
        if names_events {
            // Events close in time are named on staggered rows so that their names do not overlap; a name that
            // would run off the right edge ends at its line instead of starting there.
            let (x, y) = pixel(&(mark.t, y_max));
            let width = (mark.label.chars().count() as f64 * EVENT_FONT as f64 * 0.6) as i32;
            let x = if x + 3 + width > right { x - 3 - width } else { x + 3 };
            let row = named.iter().filter(|&&other| (other - x).abs() < width.max(60)).count() as i32 % EVENT_ROWS;
            named.push(x);
            let style = TextStyle::from((FONT, EVENT_FONT).into_font()).color(&color);
            let at = (x, y - EVENT_ROWS * (EVENT_FONT as i32 + 1) + row * (EVENT_FONT as i32 + 1));
            area.draw(&Text::new(mark.label.clone(), at, style)).map_err(failed)?;
        }
    }
    if panel.lines.len() > 1 {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperMiddle)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font((FONT, 11))
            .draw()
            .map_err(failed)?;
    }
    Ok(())
}

fn event_color(kind: &str) -> RGBColor {
    match kind {
        "signal" => RGBColor(230, 130, 0),
        "sigkill" | "oom_kill" | "fork_refused" | "wall_time" => LIMIT,
        _ => RGBColor(90, 90, 90),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMELINE: &str = r#"{"timeline":1,"pynish":"0.1.0","backend":"cgroup2","limits":{"memory_bytes":100000000,"cpu_time_s":null,"processes":null,"wall_time_s":null},"command":["make","-j8"],"label":null}
{"t":0.02,"cpu_user_s":0.01,"cpu_system_s":0.0,"memory_bytes":1000000,"processes":1}
{"t":0.5,"cpu_user_s":0.2,"cpu_system_s":0.1,"memory_bytes":90000000,"processes":2}
{"t":0.6,"event":"oom_kill"}
{"t":0.6,"event":"signal","signal":"SIGTERM","processes":2,"cause":"memory"}
{"t":0.61,"event":"exit","signal":"SIGTERM"}
{"t":0.62,"event":"end","verdict":"memory","exit_code":122}
{"t":0.7,"cpu_us"#;

    #[test]
    fn reads_samples_and_events_and_skips_a_cut_last_line() {
        let timeline = parse(TIMELINE).unwrap();
        assert_eq!(timeline.points.len(), 2);
        assert_eq!(timeline.points[1].memory, 90e6);
        let labels: Vec<&str> = timeline.marks.iter().map(|m| m.label.as_str()).collect();
        assert_eq!(labels, ["oom kill", "SIGTERM → 2", "exit SIGTERM", "end: memory"]);
        assert_eq!(title(&timeline), "make -j8 — memory (cgroup2)");
    }

    #[test]
    fn every_number_is_drawn_within_the_axes() {
        assert_eq!(plottable(f64::MAX), PLOTTABLE);
        assert_eq!(plottable(f64::MIN), 0.0);
        assert_eq!(plottable(f64::NAN), 0.0);
        assert_eq!(plottable(f64::INFINITY), PLOTTABLE);
        assert_eq!(plottable(1.5), 1.5);
        assert!((PLOTTABLE * 1.12).is_finite(), "an axis with its margin stays finite");
    }

    #[test]
    fn refuses_what_is_not_a_timeline() {
        assert!(parse("").is_err());
        assert!(parse("{\"schema\":1}\n").is_err(), "a report is not a timeline");
        let broken = TIMELINE.replacen("{\"t\":0.5", "{\"t\":0.5,,", 1);
        assert!(parse(&broken).is_err(), "a bad line in the middle");
    }

    #[test]
    fn draws_every_part() {
        let svg = draw(&parse(TIMELINE).unwrap()).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..60.min(svg.len())]);
        for text in ["--memory 100 MB", "SIGTERM → 2", "memory (MB)", "CPU time (s)", "processes"] {
            assert!(svg.contains(text), "no {text:?} in the SVG");
        }
    }

    #[test]
    fn default_output_is_the_file_as_svg() {
        assert_eq!(default_output(Path::new("runs/t.jsonl")), PathBuf::from("runs/t.svg"));
        assert_eq!(default_output(Path::new("timeline")), PathBuf::from("timeline.svg"));
    }
}
