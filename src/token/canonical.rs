//! RFC 8785 (JCS) canonical JSON, and the SHA-256 of a call's arguments in it: what receipts
//! report and what an approval bound to exact arguments carries (`approval_arguments`).

use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// RFC 8785 (JCS) canonical JSON: members sorted by their UTF-16 code units, no whitespace,
/// numbers as ECMAScript prints them, strings with the minimal escapes.
pub fn canonical(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(members) => {
            let mut keys: Vec<&String> = members.keys().collect();
            keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&members[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Number(n) => out.push_str(&number(n)),
        other => out.push_str(&other.to_string()),
    }
}

/// A number as ECMAScript's `Number.prototype.toString` writes it.
fn number(n: &serde_json::Number) -> String {
    // Integers a double holds exactly print as they are; larger ones as the double they
    // become, as RFC 8785 (IEEE 754 numbers) has it.
    let exact = n.as_i64().map(|i| i.unsigned_abs()).or(n.as_u64());
    if exact.is_some_and(|i| i <= 1 << 53) {
        return n.to_string();
    }
    let Some(f) = n.as_f64() else {
        return n.to_string();
    };
    if f == 0.0 {
        return "0".to_owned();
    }
    // Integral doubles below 1e21 print in full from their shortest digits, zero-padded, as
    // ECMAScript does (2^60 is 1152921504606847000); Rust's `{}` does the same.
    if f.fract() == 0.0 && f.abs() < 1e21 {
        return format!("{f}");
    }
    let abs = f.abs();
    if (1e-6..1e21).contains(&abs) {
        return format!("{f}");
    }
    // Exponent form: shortest digits, `e+`/`e-`.
    let text = format!("{f:e}");
    match text.split_once('e') {
        Some((mantissa, exponent)) if !exponent.starts_with('-') => {
            format!("{mantissa}e+{exponent}")
        }
        _ => text,
    }
}

/// SHA-256, hex, of `arguments` in canonical JSON (`{}` when there are none).
pub fn arguments_digest(arguments: Option<&Value>) -> String {
    let empty = Value::Object(serde_json::Map::new());
    hex::encode(Sha256::digest(
        canonical(arguments.unwrap_or(&empty)).as_bytes(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_follows_rfc_8785() {
        // RFC 8785 §3.2.2 and §3.2.3's examples, in part.
        let value: Value = serde_json::from_str(
            r#"{"numbers":[333333333.33333329,1E30,4.50,2e-3,0.000000000000000000000000001],
                "string":"\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
                "literals":[null,true,false]}"#,
        )
        .unwrap_or_default();
        assert_eq!(
            canonical(&value),
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
        let sorted: Value =
            serde_json::from_str(r#"{"\u20ac":1,"\r":2,"1":3,"\u00e9":4}"#).unwrap_or_default();
        assert_eq!(canonical(&sorted), "{\"\\r\":2,\"1\":3,\"é\":4,\"€\":1}");
        // Past 2^53 an integer is the double it becomes, as JavaScript prints it.
        let big: Value =
            serde_json::from_str("[9007199254740993,-9007199254740993,9007199254740992]")
                .unwrap_or_default();
        assert_eq!(
            canonical(&big),
            "[9007199254740992,-9007199254740992,9007199254740992]"
        );
    }
}
