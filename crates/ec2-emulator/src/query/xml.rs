//! A tiny XML writer for EC2 responses (namespace, escaping, nested elements).

/// EC2's API namespace.
pub const EC2_NAMESPACE: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";

/// Builds one XML document.
#[derive(Debug, Default)]
pub struct Xml {
    buf: String,
}

/// Escapes text for element content.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

impl Xml {
    /// A response document `<{Action}Response xmlns=...>` with its `requestId`; `body`
    /// writes the action's elements.
    pub fn response(action: &str, request_id: &str, body: impl FnOnce(&mut Xml)) -> String {
        let mut xml = Xml::default();
        xml.buf
            .push_str(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
        xml.buf
            .push_str(&format!(r#"<{action}Response xmlns="{EC2_NAMESPACE}">"#));
        xml.leaf("requestId", request_id);
        body(&mut xml);
        xml.buf.push_str(&format!("</{action}Response>"));
        xml.buf
    }

    /// EC2's error document.
    pub fn error(code: &str, message: &str, request_id: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>{}</Code><Message>{}</Message></Error></Errors><RequestID>{}</RequestID></Response>"#,
            escape(code),
            escape(message),
            escape(request_id)
        )
    }

    /// `<name>text</name>`
    pub fn leaf(&mut self, name: &str, text: impl std::fmt::Display) -> &mut Self {
        let text = escape(&text.to_string());
        self.buf.push_str(&format!("<{name}>{text}</{name}>"));
        self
    }

    /// Escaped text in the current element (a list of plain values: `<item>text</item>`).
    pub fn text(&mut self, text: impl std::fmt::Display) -> &mut Self {
        self.buf.push_str(&escape(&text.to_string()));
        self
    }

    /// `<name>…</name>` with nested content.
    pub fn node(&mut self, name: &str, inner: impl FnOnce(&mut Xml)) -> &mut Self {
        self.buf.push_str(&format!("<{name}>"));
        inner(self);
        self.buf.push_str(&format!("</{name}>"));
        self
    }

    /// `<name><item>…</item>…</name>`, EC2's list encoding.
    pub fn items<T>(
        &mut self,
        name: &str,
        items: impl IntoIterator<Item = T>,
        mut each: impl FnMut(&mut Xml, T),
    ) -> &mut Self {
        self.node(name, |x| {
            for item in items {
                x.node("item", |x| each(x, item));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_namespaced_and_escaped() {
        let doc = Xml::response("CreateTags", "req-1", |x| {
            x.leaf("return", true);
            x.items("tagSet", [("k", "a<b&c")], |x, (k, v)| {
                x.leaf("key", k).leaf("value", v);
            });
        });
        assert!(
            doc.contains(
                r#"<CreateTagsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">"#
            )
        );
        assert!(doc.contains("<requestId>req-1</requestId><return>true</return>"));
        assert!(
            doc.contains("<tagSet><item><key>k</key><value>a&lt;b&amp;c</value></item></tagSet>")
        );
        assert!(doc.ends_with("</CreateTagsResponse>"));
        let err = Xml::error("InvalidParameterValue", "bad 'x'", "r");
        assert!(
            err.contains("<Code>InvalidParameterValue</Code><Message>bad &apos;x&apos;</Message>")
        );
    }
}
