//! Log lines as upstream's zap JSON encoder writes them (`zap.NewProductionEncoderConfig`
//! with `ISO8601TimeEncoder`, upstream `pkg/utils/logger/zaplogger.go`, `getEncoder`): one
//! object per line, keys in zap's order `level` (lowercase), `ts`, `caller`
//! (`dir/file:line`, zap's `ShortCallerEncoder`), `msg`, then the event's fields:
//!
//! `{"level":"info","ts":"2024-05-16T20:06:51.404Z","caller":"ipamd/main.rs:55","msg":"ipamd serving","port":50051}`

use std::fmt;

use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::time::{self, UnixMillis};

/// The tracing-subscriber event format writing zap's JSON lines.
#[derive(Debug, Clone, Copy, Default)]
pub struct ZapJson;

/// zap's level name; zap has no trace level, so trace is `debug`.
pub fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG | Level::TRACE => "debug",
    }
}

/// zap's `ShortCallerEncoder` for a Rust source path: the file and the directory above it,
/// skipping `src` (`crates/ipamd/src/pool.rs` → `ipamd/pool.rs`).
pub fn short_caller(file: &str, line: u32) -> String {
    let parts: Vec<&str> = file
        .split(['/', '\\'])
        .filter(|p| !p.is_empty() && *p != "src" && *p != ".")
        .collect();
    let tail = &parts[parts.len().saturating_sub(2)..];
    format!("{}:{line}", tail.join("/"))
}

/// One event, as collected from tracing.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Record {
    pub msg: String,
    pub fields: Vec<(String, Value)>,
}

impl Visit for Record {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.msg = text;
        } else {
            self.fields
                .push((field.name().to_owned(), Value::String(text)));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.msg = value.to_owned();
        } else {
            self.push(field, Value::String(value.to_owned()));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, Value::Bool(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // zap writes non-finite floats as the strings "NaN", "+Inf", "-Inf".
        let v = serde_json::Number::from_f64(value).map_or_else(
            || {
                let s = if value.is_nan() {
                    "NaN"
                } else if value > 0.0 {
                    "+Inf"
                } else {
                    "-Inf"
                };
                Value::String(s.to_owned())
            },
            Value::Number,
        );
        self.push(field, v);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push(field, Value::String(value.to_string()));
    }
}

impl Record {
    fn push(&mut self, field: &Field, value: Value) {
        self.fields.push((field.name().to_owned(), value));
    }
}

fn quoted(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// The JSON line (with its newline) for one event.
pub fn line(level: &Level, ts: UnixMillis, caller: Option<&str>, record: &Record) -> String {
    let mut out = format!(
        "{{\"level\":\"{}\",\"ts\":\"{}\"",
        level_name(level),
        time::iso8601(ts)
    );
    if let Some(c) = caller {
        out.push_str(",\"caller\":");
        out.push_str(&quoted(c));
    }
    out.push_str(",\"msg\":");
    out.push_str(&quoted(&record.msg));
    for (key, value) in &record.fields {
        out.push(',');
        out.push_str(&quoted(key));
        out.push(':');
        out.push_str(&value.to_string());
    }
    out.push_str("}\n");
    out
}

impl<S, N> FormatEvent<S, N> for ZapJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut record = Record::default();
        event.record(&mut record);
        let caller = meta
            .file()
            .map(|f| short_caller(f, meta.line().unwrap_or(0)));
        writer.write_str(&line(
            meta.level(),
            time::now_millis(),
            caller.as_deref(),
            &record,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callers_are_short() {
        assert_eq!(
            short_caller("crates/ipamd/src/pool.rs", 7),
            "ipamd/pool.rs:7"
        );
        assert_eq!(
            short_caller("crates/ipamd/src/pool/plan.rs", 1),
            "pool/plan.rs:1"
        );
        assert_eq!(short_caller("main.rs", 3), "main.rs:3");
        assert_eq!(
            short_caller("/root/.cargo/registry/src/x/h2-0.4.1/src/codec.rs", 9),
            "h2-0.4.1/codec.rs:9"
        );
    }

    #[test]
    fn lines_have_zaps_keys_in_zaps_order() {
        let record = Record {
            msg: "say \"hi\"\n".into(),
            fields: vec![
                ("container".into(), Value::from("c0")),
                ("code".into(), Value::from(7u64)),
                ("ok".into(), Value::Bool(true)),
            ],
        };
        let l = line(
            &Level::WARN,
            1_715_890_011_404,
            Some("cni/plugin.rs:9"),
            &record,
        );
        assert_eq!(
            l,
            "{\"level\":\"warn\",\"ts\":\"2024-05-16T20:06:51.404Z\",\"caller\":\"cni/plugin.rs:9\",\
             \"msg\":\"say \\\"hi\\\"\\n\",\"container\":\"c0\",\"code\":7,\"ok\":true}\n"
        );
        let v: Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["msg"], "say \"hi\"\n");
        assert_eq!(level_name(&Level::TRACE), "debug");
        let bare = line(&Level::ERROR, 0, None, &Record::default());
        assert_eq!(
            bare,
            "{\"level\":\"error\",\"ts\":\"1970-01-01T00:00:00.000Z\",\"msg\":\"\"}\n"
        );
    }
}
