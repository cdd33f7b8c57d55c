//! Escaping text for the XML the gateway writes itself (error bodies, OCS
//! replies, `oc:` property values). One function for text and attribute
//! values alike: `&`, `<`, `>`, `"` and `'` become entities, so a value is
//! safe wherever it is placed.

/// `s` with the five XML special characters replaced by entities.
pub fn escape(s: &str) -> String {
    if !s.contains(['&', '<', '>', '"', '\'']) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
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

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escapes_the_five_special_characters() {
        assert_eq!(escape("plain"), "plain");
        assert_eq!(
            escape(r#"<a href="x">Tom & 'Jerry'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &apos;Jerry&apos;&lt;/a&gt;"
        );
    }
}
