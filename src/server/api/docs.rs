//! `GET /docs`: the served OpenAPI description as one page of plain HTML, rendered here from the
//! spec. It loads nothing (no script, no stylesheet, no font): it reads the same offline as
//! online, and its content policy forbids everything but its own inline style.

use std::fmt::Write as _;

use serde_json::Value;

/// What `/docs` may load: its inline style, and nothing else.
pub const DOCS_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;\
padding:0 1rem;color:#1b1b1b}code{font:13px ui-monospace,monospace;background:#f3f3f3;\
padding:0 .2em}h2{border-bottom:1px solid #ccc;margin-top:2.5rem}h3{margin:1.8rem 0 .3rem}\
table{border-collapse:collapse;margin:.4rem 0}td,th{border:1px solid #ddd;padding:.2rem .5rem;\
text-align:left;vertical-align:top}nav a{margin-right:.8rem}";

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// Escapes text for HTML element content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// A schema's name for a `$ref`, or its type in words.
fn type_of(schema: &Value) -> String {
    if let Some(name) = schema.get("$ref").and_then(Value::as_str) {
        let name = name.rsplit('/').next().unwrap_or(name);
        return format!("<a href=\"#schema-{0}\">{0}</a>", escape(name));
    }
    if let Some(items) = schema.get("items") {
        return format!("array of {}", type_of(items));
    }
    for combined in ["oneOf", "anyOf", "allOf"] {
        if let Some(parts) = schema.get(combined).and_then(Value::as_array) {
            let names: Vec<String> = parts.iter().map(type_of).collect();
            return names.join(" or ");
        }
    }
    match schema.get("type") {
        Some(Value::String(kind)) => escape(kind),
        Some(Value::Array(kinds)) => kinds
            .iter()
            .filter_map(Value::as_str)
            .map(escape)
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "any".to_owned(),
    }
}

fn operation(out: &mut String, method: &str, path: &str, op: &Value) {
    let _ = write!(
        out,
        "<h3 id=\"{}\"><code>{} {}</code></h3><p>{}</p>",
        escape(text(op, "operationId")),
        method.to_ascii_uppercase(),
        escape(path),
        escape(text(op, "summary"))
    );
    if !text(op, "description").is_empty() {
        let _ = write!(out, "<p>{}</p>", escape(text(op, "description")));
    }
    if let Some(parameters) = op.get("parameters").and_then(Value::as_array) {
        out.push_str("<table><tr><th>parameter</th><th>in</th><th>type</th><th></th></tr>");
        for p in parameters {
            let required = if p.get("required").and_then(Value::as_bool) == Some(true) {
                "required. "
            } else {
                ""
            };
            let _ = write!(
                out,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{required}{}</td></tr>",
                escape(text(p, "name")),
                escape(text(p, "in")),
                p.get("schema").map(type_of).unwrap_or_default(),
                escape(text(p, "description"))
            );
        }
        out.push_str("</table>");
    }
    if let Some(content) = op
        .pointer("/requestBody/content")
        .and_then(Value::as_object)
    {
        for (media, body) in content {
            let _ = write!(
                out,
                "<p>Body, <code>{}</code>: {}</p>",
                escape(media),
                body.get("schema").map(type_of).unwrap_or_default()
            );
        }
    }
    if let Some(responses) = op.get("responses").and_then(Value::as_object) {
        out.push_str("<table><tr><th>status</th><th>answer</th></tr>");
        for (status, response) in responses {
            let body = response
                .get("content")
                .and_then(Value::as_object)
                .and_then(|c| c.values().next())
                .and_then(|c| c.get("schema"))
                .map(|s| format!(" ({})", type_of(s)))
                .unwrap_or_default();
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}{body}</td></tr>",
                escape(status),
                escape(text(response, "description"))
            );
        }
        out.push_str("</table>");
    }
}

fn schema(out: &mut String, name: &str, schema: &Value) {
    let _ = write!(
        out,
        "<h3 id=\"schema-{0}\"><code>{0}</code></h3><p>{1}</p>",
        escape(name),
        escape(text(schema, "description"))
    );
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        if let Some(values) = schema.get("enum").and_then(Value::as_array) {
            let values: Vec<String> = values
                .iter()
                .map(|v| format!("<code>{}</code>", escape(&v.to_string())))
                .collect();
            let _ = write!(out, "<p>One of {}.</p>", values.join(", "));
        }
        return;
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    out.push_str("<table><tr><th>field</th><th>type</th><th></th></tr>");
    for (field, property) in properties {
        let marker = if required.contains(&field.as_str()) {
            "required. "
        } else {
            ""
        };
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td><td>{marker}{}</td></tr>",
            escape(field),
            type_of(property),
            escape(text(property, "description"))
        );
    }
    out.push_str("</table>");
}

/// The page for `spec`: its endpoints by tag, then its schemas.
pub fn render(spec: &Value) -> String {
    let mut out = String::new();
    let title = text(&spec["info"], "title");
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>mandate API</title><style>{STYLE}</style></head><body><h1>{} {}</h1><p>{}</p>\
         <p>The same as JSON: <a href=\"/openapi.json\">/openapi.json</a>.</p><nav>",
        escape(title),
        escape(text(&spec["info"], "version")),
        escape(text(&spec["info"], "description"))
    );
    let tags: Vec<&Value> = spec["tags"]
        .as_array()
        .map(|t| t.iter().collect())
        .unwrap_or_default();
    for tag in &tags {
        let _ = write!(
            out,
            "<a href=\"#tag-{0}\">{0}</a>",
            escape(text(tag, "name"))
        );
    }
    out.push_str("<a href=\"#schemas\">schemas</a></nav>");
    let paths = spec["paths"].as_object();
    for tag in &tags {
        let name = text(tag, "name");
        let _ = write!(
            out,
            "<h2 id=\"tag-{0}\">{0}</h2><p>{1}</p>",
            escape(name),
            escape(text(tag, "description"))
        );
        for (path, item) in paths.into_iter().flatten() {
            for method in METHODS {
                let Some(op) = item.get(method) else { continue };
                let tagged = op["tags"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t.as_str() == Some(name)));
                if tagged {
                    operation(&mut out, method, path, op);
                }
            }
        }
    }
    out.push_str("<h2 id=\"schemas\">schemas</h2>");
    if let Some(schemas) = spec
        .pointer("/components/schemas")
        .and_then(Value::as_object)
    {
        for (name, value) in schemas {
            schema(&mut out, name, value);
        }
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_the_spec_is_escaped() {
        let spec = serde_json::json!({
            "info": {"title": "t", "version": "1", "description": "<script>alert(1)</script>"},
            "tags": [{"name": "x", "description": "a & b"}],
            "paths": {"/p": {"get": {"tags": ["x"], "summary": "\"quoted\"", "responses": {}}}},
        });
        let page = render(&spec);
        assert!(!page.contains("<script"), "{page}");
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains("a &amp; b"));
        assert!(page.contains("<code>GET /p</code>"));
        assert!(page.contains("&quot;quoted&quot;"));
    }
}
