//! What a link preview needs from a page: its OpenGraph properties (`<meta property="og:…"
//! content="…">`), else its `<title>` and `<meta name="description">`. A small scanner, not an
//! HTML parser: it only reads tags' attributes and the title's text, and never fails.

use serde_json::{Map, Value};

/// The properties of a page, as the spec's `preview_url` answer holds them (`og:title`, …).
pub(super) fn og_properties(html: &str) -> Map<String, Value> {
    let mut properties = Map::new();
    let mut rest = html;
    while let Some(start) = find_ascii_ci(rest, "<meta") {
        let after = &rest[start + 5..];
        let end = after.find('>').unwrap_or(after.len());
        let attributes = attributes(&after[..end]);
        let key = attributes.iter().find(|(name, _)| name == "property" || name == "name").map(|(_, v)| v.clone());
        let content = attributes.iter().find(|(name, _)| name == "content").map(|(_, v)| v.clone());
        if let (Some(key), Some(content)) = (key, content) {
            let key = key.to_ascii_lowercase();
            if key.starts_with("og:") && !properties.contains_key(&key) {
                properties.insert(key, Value::String(content));
            } else if key == "description" && !properties.contains_key("og:description") {
                properties.insert("og:description".to_owned(), Value::String(content));
            }
        }
        rest = &after[end..];
    }
    if !properties.contains_key("og:title")
        && let Some(title) = title(html)
    {
        properties.insert("og:title".to_owned(), Value::String(title));
    }
    properties
}

fn title(html: &str) -> Option<String> {
    let start = find_ascii_ci(html, "<title")?;
    let after = &html[start..];
    let open_end = after.find('>')? + 1;
    let text = &after[open_end..];
    let close = find_ascii_ci(text, "</title").unwrap_or(text.len());
    let title = decode_entities(text[..close].split_whitespace().collect::<Vec<_>>().join(" ").as_str());
    (!title.is_empty()).then_some(title)
}

/// `name="value"`, `name='value'` and `name=value` pairs, names lowercased, values decoded.
fn attributes(tag: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut rest = tag.trim_start_matches('/');
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '/');
        let name_end = rest.find(|c: char| c == '=' || c.is_whitespace() || c == '/').unwrap_or(rest.len());
        if name_end == 0 {
            return found;
        }
        let name = rest[..name_end].to_ascii_lowercase();
        rest = rest[name_end..].trim_start();
        let Some(after_equals) = rest.strip_prefix('=') else {
            found.push((name, String::new()));
            continue;
        };
        let after_equals = after_equals.trim_start();
        let (value, remaining) = match after_equals.chars().next() {
            Some(quote @ ('"' | '\'')) => {
                let inner = &after_equals[1..];
                let close = inner.find(quote).unwrap_or(inner.len());
                (&inner[..close], inner.get(close + 1..).unwrap_or_default())
            }
            _ => {
                let end = after_equals.find(char::is_whitespace).unwrap_or(after_equals.len());
                (&after_equals[..end], &after_equals[end..])
            }
        };
        found.push((name, decode_entities(value)));
        rest = remaining;
    }
}

fn decode_entities(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Where `needle` (lowercase ASCII) starts in `haystack`, ignoring ASCII case.
fn find_ascii_ci(haystack: &str, needle: &str) -> Option<usize> {
    let (haystack, needle) = (haystack.as_bytes(), needle.as_bytes());
    (0..haystack.len().checked_sub(needle.len())? + 1)
        .find(|&at| haystack[at..at + needle.len()].eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opengraph_wins_over_title_and_description() {
        let page = r#"<html><head><TITLE> Plain
            title </TITLE><meta name="description" content="plain &amp; simple">
            <meta property="og:title" content='The "real" title'><meta property=og:image content=/cat.png />
            </head></html>"#;
        let properties = og_properties(page);
        assert_eq!(properties["og:title"], "The \"real\" title");
        assert_eq!(properties["og:description"], "plain & simple");
        assert_eq!(properties["og:image"], "/cat.png");
    }

    #[test]
    fn a_page_without_opengraph_has_its_title() {
        let properties = og_properties("<title>Only a title</title><p>text</p>");
        assert_eq!(properties["og:title"], "Only a title");
        assert_eq!(properties.len(), 1);
        assert!(og_properties("no tags at all <meta").is_empty());
        assert!(og_properties("<title>").is_empty());
    }
}
