//! The audit log's own formatter: one line per `audit` event, in the same shapes as the other
//! log lines (plain or JSON), written by hand.
//!
//! The service emits an audit event for every signature it issues, so this formatter runs as
//! often as the service signs. tracing-subscriber's general formatter cost more per event than
//! auth, policy and signing together (BENCHMARKS.md has the numbers): it formats every value
//! through `Debug`, and the timestamp through several `Display` calls. Audit events have a
//! fixed shape (short text and integer fields), so a direct writer does the same job in a
//! fraction of that.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};

use super::Format;
use super::is_deceptive;

/// The target of audit events; only they reach this layer.
pub(crate) const TARGET: &str = "audit";

/// Writes `audit` events to `writer`, one line each, in `format`.
pub(crate) struct AuditLayer<W> {
    writer: W,
    format: Format,
}

impl<W> AuditLayer<W> {
    pub(crate) fn new(writer: W, format: Format) -> Self {
        AuditLayer { writer, format }
    }
}

thread_local! {
    /// The line being built, reused so an event allocates nothing here.
    static LINE: RefCell<String> = RefCell::new(String::with_capacity(512));
}

impl<S, W> Layer<S> for AuditLayer<W>
where
    S: Subscriber,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        LINE.with(|line| {
            // A reentrant event (logging from inside a writer) gets a fresh buffer.
            let mut own;
            let mut borrowed = line.try_borrow_mut();
            let line: &mut String = match &mut borrowed {
                Ok(line) => line,
                Err(_) => {
                    own = String::new();
                    &mut own
                }
            };
            line.clear();
            format_event(line, event, self.format);
            // One append to the log writer's buffer (see `writer`); lossless.
            let _ = self.writer.make_writer().write_all(line.as_bytes());
        });
    }
}

fn format_event(line: &mut String, event: &Event<'_>, format: Format) {
    let now = humantime::format_rfc3339_micros(std::time::SystemTime::now());
    let level = event.metadata().level().as_str();
    let target = event.metadata().target();
    match format {
        Format::Plain => {
            // As tracing-subscriber writes them: `<time>  INFO audit: <message> k=v ...`.
            let _ = write!(line, "{now} {level:>5} {target}:");
            event.record(&mut PlainFields { line });
        }
        Format::Json => {
            let _ = write!(
                line,
                "{{\"timestamp\":\"{now}\",\"level\":\"{level}\",\"fields\":{{"
            );
            let mut fields = JsonFields { line, first: true };
            event.record(&mut fields);
            line.push_str("},\"target\":");
            push_json_string(line, target);
            line.push('}');
        }
    }
    line.push('\n');
}

/// ` message k=v k="text"`, text quoted and escaped like Rust's `Debug` for the common cases.
struct PlainFields<'a> {
    line: &'a mut String,
}

impl Visit for PlainFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.line.push(' ');
            self.line.push_str(value);
            return;
        }
        self.line.push(' ');
        self.line.push_str(field.name());
        self.line.push_str("=\"");
        push_escaped(self.line, value, false);
        self.line.push('"');
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        let _ = write!(self.line, " {}={value}", field.name());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        let _ = write!(self.line, " {}={value}", field.name());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        let _ = write!(self.line, " {}={value}", field.name());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.line, " {value:?}");
        } else {
            let _ = write!(self.line, " {}={value:?}", field.name());
        }
    }
}

/// `"k":v` pairs of a JSON object.
struct JsonFields<'a> {
    line: &'a mut String,
    first: bool,
}

impl JsonFields<'_> {
    fn key(&mut self, field: &Field) {
        if !std::mem::replace(&mut self.first, false) {
            self.line.push(',');
        }
        push_json_string(self.line, field.name());
        self.line.push(':');
    }
}

impl Visit for JsonFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        push_json_string(self.line, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        let _ = write!(self.line, "{value}");
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        let _ = write!(self.line, "{value}");
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.line.push_str(if value { "true" } else { "false" });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.key(field);
        let text = format!("{value:?}");
        push_json_string(self.line, &text);
    }
}

fn push_json_string(line: &mut String, value: &str) {
    line.push('"');
    push_escaped(line, value, true);
    line.push('"');
}

/// Appends `value` with `"`, `\`, control characters and the characters that make a line
/// lie ([`is_deceptive`]: separators, bidi controls, invisible ones) escaped (JSON's `\u00XX`
/// form when `json`, Rust's `\u{X}` otherwise). Text without any of them, the usual case, is
/// copied in one go.
fn push_escaped(line: &mut String, value: &str, json: bool) {
    let escaped = |c: char| c.is_control() || is_deceptive(c);
    let needs_escape = |c: char| c == '"' || c == '\\' || escaped(c);
    if !value.chars().any(needs_escape) {
        line.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '"' => line.push_str("\\\""),
            '\\' => line.push_str("\\\\"),
            '\n' => line.push_str("\\n"),
            '\r' => line.push_str("\\r"),
            '\t' => line.push_str("\\t"),
            c if escaped(c) && json && (c as u32) < 0x10000 => {
                let _ = write!(line, "\\u{:04x}", c as u32);
            }
            c if escaped(c) && json => {
                // Outside the BMP, JSON spells a character as its UTF-16 surrogate pair.
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(line, "\\u{unit:04x}");
                }
            }
            c if escaped(c) => {
                let _ = write!(line, "\\u{{{:x}}}", c as u32);
            }
            c => line.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    /// Collects what the layer writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Captured {
        type Writer = Captured;
        fn make_writer(&'w self) -> Captured {
            self.clone()
        }
    }

    fn emit(format: Format) -> String {
        let captured = Captured::default();
        let subscriber =
            tracing_subscriber::registry().with(AuditLayer::new(captured.clone(), format));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(
                target: "audit",
                caller = "bff",
                user_id = "u\"1\\\n\u{1}名",
                issued_at = 1_700_000_000i64,
                count = 3u64,
                one_time = true,
                "signature issued"
            );
        });
        let bytes = captured.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn json_lines_parse_and_carry_every_field() {
        let line = emit(Format::Json);
        assert!(
            line.ends_with('\n') && line.matches('\n').count() == 1,
            "{line}"
        );
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(event["target"], "audit");
        assert_eq!(event["level"], "INFO");
        let fields = &event["fields"];
        assert_eq!(fields["message"], "signature issued");
        assert_eq!(fields["caller"], "bff");
        assert_eq!(fields["user_id"], "u\"1\\\n\u{1}名");
        assert_eq!(fields["issued_at"], 1_700_000_000i64);
        assert_eq!(fields["count"], 3);
        assert_eq!(fields["one_time"], true);
        let timestamp = event["timestamp"].as_str().unwrap();
        humantime::parse_rfc3339(timestamp).expect("an RFC 3339 timestamp");
    }

    #[test]
    fn plain_lines_look_like_the_other_log_lines() {
        let line = emit(Format::Plain);
        let (timestamp, rest) = line.split_once(' ').unwrap();
        humantime::parse_rfc3339(timestamp).expect("an RFC 3339 timestamp");
        assert_eq!(
            rest,
            " INFO audit: signature issued caller=\"bff\" user_id=\"u\\\"1\\\\\\n\\u{1}名\" \
             issued_at=1700000000 count=3 one_time=true\n"
        );
    }

    fn emit_user(format: Format, user_id: &str) -> String {
        let captured = Captured::default();
        let subscriber =
            tracing_subscriber::registry().with(AuditLayer::new(captured.clone(), format));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "audit", user_id, "signature issued");
        });
        let bytes = captured.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn separators_and_bidi_controls_never_reach_a_line_raw() {
        let user = "evil\u{202E}gnp.exe\u{2028}fake line\u{E0041}";
        let plain = emit_user(Format::Plain, user);
        assert!(
            plain.ends_with("user_id=\"evil\\u{202e}gnp.exe\\u{2028}fake line\\u{e0041}\"\n"),
            "{plain}"
        );
        let json = emit_user(Format::Json, user);
        assert!(
            !json.contains('\u{202E}') && !json.contains('\u{2028}'),
            "{json}"
        );
        assert!(json.contains("\\udb40\\udc41"), "{json}");
        let event: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(event["fields"]["user_id"], user);
    }
}
