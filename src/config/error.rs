//! Configuration errors: each names the field (and caller or key) it is about, never a value
//! that could be a secret.

use std::fmt;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The text is not TOML, or does not have the expected shape (an unknown key, a wrong type).
    #[error("line {line}{}: {message}", key.as_ref().map(|k| format!(" (`{k}`)")).unwrap_or_default())]
    Syntax {
        line: usize,
        /// The key written on that line, when there is one.
        key: Option<String>,
        message: String,
    },
    /// A value was refused by the checks after parsing.
    #[error("{field}: {problem}")]
    Field { field: String, problem: String },
}

impl ConfigError {
    pub(crate) fn field(field: impl Into<String>, problem: impl fmt::Display) -> Self {
        ConfigError::Field {
            field: field.into(),
            problem: problem.to_string(),
        }
    }

    /// The field an error is about, as far as it is known.
    pub fn field_name(&self) -> Option<&str> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Syntax { key, .. } => key.as_deref(),
            ConfigError::Field { field, .. } => Some(field),
        }
    }

    /// Converts a TOML error without its source excerpt: toml's own rendering quotes the
    /// offending line, and that line could hold a secret pasted into the wrong key.
    pub(crate) fn from_toml(text: &str, error: &toml::de::Error) -> Self {
        let start = error.span().map_or(0, |span| span.start.min(text.len()));
        let line = text[..start].matches('\n').count() + 1;
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_text = text[line_start..].lines().next().unwrap_or("");
        ConfigError::Syntax {
            line,
            key: key_of_line(line_text),
            message: redact_quoted(error.message()),
        }
    }
}

/// The bare key of a `key = value` line, if the line has that shape.
fn key_of_line(line: &str) -> Option<String> {
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    bare.then(|| key.to_owned())
}

/// Replaces every double-quoted part of a message (serde quotes offending string values that
/// way) with `"…"`; field names are quoted with backticks and survive.
fn redact_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut parts = message.split('"');
    if let Some(first) = parts.next() {
        out.push_str(first);
    }
    for (i, part) in parts.enumerate() {
        if i % 2 == 0 {
            out.push_str("\"…");
        } else {
            out.push('"');
            out.push_str(part);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_are_redacted_and_backticked_names_kept() {
        assert_eq!(
            redact_quoted("invalid type: string \"s3cr3t\", expected u32"),
            "invalid type: string \"…\", expected u32"
        );
        assert_eq!(
            redact_quoted("unknown field `secret_key`, expected `secret_id`"),
            "unknown field `secret_key`, expected `secret_id`"
        );
    }

    #[test]
    fn key_of_line_takes_only_bare_keys() {
        assert_eq!(
            key_of_line("  max_validity_seconds = \"x\""),
            Some("max_validity_seconds".into())
        );
        assert_eq!(key_of_line("[[callers]]"), None);
        assert_eq!(key_of_line("\"quoted key\" = 1"), None);
    }
}
