//! A small deterministic YAML writer for JSON values (block style, two-space indent), used to
//! write the generated CRD manifests. Strings that could be read back as something else are
//! written as JSON-quoted strings, which YAML reads as the same string.

use serde_json::Value;

/// Render `value` (normally an object) as a YAML document, without the `---` marker.
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => write_map(map, 0, &mut out),
        Value::Array(items) if !items.is_empty() => write_seq(items, 0, &mut out),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

fn write_map(map: &serde_json::Map<String, Value>, indent: usize, out: &mut String) {
    for (key, value) in map {
        out.push_str(&" ".repeat(indent));
        out.push_str(&string(key));
        out.push(':');
        write_after_key(value, indent, out);
    }
}

fn write_after_key(value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            write_map(map, indent + 2, out);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            write_seq(items, indent + 2, out);
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

fn write_seq(items: &[Value], indent: usize, out: &mut String) {
    for item in items {
        let mut nested = String::new();
        match item {
            Value::Object(map) if !map.is_empty() => write_map(map, indent + 2, &mut nested),
            Value::Array(inner) if !inner.is_empty() => write_seq(inner, indent + 2, &mut nested),
            other => {
                out.push_str(&" ".repeat(indent));
                out.push_str("- ");
                out.push_str(&scalar(other));
                out.push('\n');
                continue;
            }
        }
        // The first line of the nested block starts at indent + 2: put the dash there.
        out.push_str(&" ".repeat(indent));
        out.push_str("- ");
        out.push_str(&nested[indent + 2..]);
    }
}

fn scalar(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Object(_) => "{}".to_owned(),
        Value::Array(_) => "[]".to_owned(),
    }
}

fn string(s: &str) -> String {
    if is_plain_safe(s) {
        s.to_owned()
    } else {
        Value::String(s.to_owned()).to_string()
    }
}

fn is_plain_safe(s: &str) -> bool {
    const RESERVED: &[&str] = &[
        "true", "false", "yes", "no", "on", "off", "null", "y", "n", "~",
    ];
    let Some(first) = s.chars().next() else {
        return false;
    };
    first.is_ascii_alphabetic()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '/' | '_' | '-'))
        && !RESERVED.contains(&s.to_ascii_lowercase().as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn block_style_with_quoting() {
        let v = json!({
            "a": "plain-value",
            "b": {"c": [1, "two words", {"d": true, "e": []}], "f": {}},
            "g": "true",
            "h": "x-kubernetes: y"
        });
        let want = "a: plain-value\nb:\n  c:\n    - 1\n    - \"two words\"\n    - d: true\n      e: []\n  f: {}\ng: \"true\"\nh: \"x-kubernetes: y\"\n";
        assert_eq!(to_yaml(&v), want);
    }
}
