//! Wall time per phase of one plugin command (config parse, runtime, ipamd, wiring, ...),
//! logged at debug level with the command's last line, so that an operator (and
//! `scripts/bench-cni.sh`) can see where an ADD or a DEL spent its time without a profiler
//! (docs/cni-plugin.md, "Where ADD and DEL spend their time").
//!
//! One process runs one command, so the marks are process-wide; marking costs a clock read.

use std::sync::Mutex;
use std::time::Instant;

struct Marks {
    start: Option<Instant>,
    last: Option<Instant>,
    phases: Vec<(&'static str, u128)>,
}

static MARKS: Mutex<Marks> = Mutex::new(Marks {
    start: None,
    last: None,
    phases: Vec::new(),
});

/// Starts the clock (at the top of `main`); marks before this measure from the first mark.
pub fn start() {
    let now = Instant::now();
    let mut m = MARKS.lock().unwrap_or_else(|e| e.into_inner());
    m.start = Some(now);
    m.last = Some(now);
    m.phases.clear();
}

/// Ends phase `name`: the time since the previous mark (or [`start`]) is booked to it.
pub fn mark(name: &'static str) {
    let now = Instant::now();
    let mut m = MARKS.lock().unwrap_or_else(|e| e.into_inner());
    let since = m.last.unwrap_or(now);
    m.start.get_or_insert(since);
    m.last = Some(now);
    m.phases.push((name, now.duration_since(since).as_micros()));
}

/// Books the time since `since` to `name` without ending the current phase: for work that
/// overlaps other work (ipamd's answer and the veth, during ADD).
pub fn span(name: &'static str, since: Instant) {
    let mut m = MARKS.lock().unwrap_or_else(|e| e.into_inner());
    m.phases.push((name, since.elapsed().as_micros()));
}

/// The phases so far, `name=µs` separated by spaces, then `total=µs` since [`start`].
pub fn summary() -> String {
    let m = MARKS.lock().unwrap_or_else(|e| e.into_inner());
    format_phases(
        &m.phases,
        m.start.zip(m.last).map(|(s, l)| (l - s).as_micros()),
    )
}

/// `name=µs ... total=µs` (pure).
fn format_phases(phases: &[(&str, u128)], total: Option<u128>) -> String {
    let mut out: Vec<String> = phases.iter().map(|(n, us)| format!("{n}={us}")).collect();
    if let Some(t) = total {
        out.push(format!("total={t}"));
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_listed_in_order_with_the_total() {
        assert_eq!(
            format_phases(&[("parse", 12), ("ipamd", 900)], Some(950)),
            "parse=12 ipamd=900 total=950"
        );
        assert_eq!(format_phases(&[], None), "");
    }

    #[test]
    fn marks_book_the_time_since_the_previous_mark() {
        start();
        std::thread::sleep(std::time::Duration::from_millis(2));
        mark("a");
        span("s", Instant::now());
        mark("b");
        let s = summary();
        let a: u128 = s
            .split(' ')
            .find_map(|kv| kv.strip_prefix("a="))
            .and_then(|v| v.parse().ok())
            .unwrap();
        assert!(a >= 2000, "{s}");
        assert!(
            s.contains(" s=") && s.contains(" b=") && s.contains(" total="),
            "{s}"
        );
    }
}
