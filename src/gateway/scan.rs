//! Scanning what an upstream answers before a client sees it: built-in scanners for
//! credentials (private keys, cloud access keys, bearer tokens and JWTs, platform tokens, and
//! mandates themselves) and configured patterns, each redacting the match or blocking the
//! whole answer. Every string in the answer is scanned; regexes run in linear time.

use regex::Regex;
use serde_json::Value;

/// What a match does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Replace the match with `[REDACTED:<name>]`.
    Redact,
    /// Withhold the whole answer.
    Block,
}

/// One scanner.
#[derive(Debug, Clone)]
pub struct Scanner {
    /// Its name, as redactions and receipts state it.
    pub name: String,
    regex: Regex,
    /// What a match does.
    pub action: Action,
    /// Only matches that decode as a Biscuit token count (the mandate scanner).
    biscuit_only: bool,
}

/// Every configured scanner.
#[derive(Debug, Clone, Default)]
pub struct Scanners(pub Vec<Scanner>);

/// What scanning an answer found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    /// Scanners that redacted something.
    pub redacted: Vec<String>,
    /// The first scanner that blocks, if one matched.
    pub blocked: Option<String>,
}

/// The built-in credential patterns (after gitleaks' rules).
const CREDENTIALS: &[(&str, &str)] = &[
    (
        "private-key",
        r"(?s)-----BEGIN[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----.*?-----END[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----",
    ),
    (
        "aws-access-key",
        r"\b(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}\b",
    ),
    (
        "github-token",
        r"\b(?:ghp|gho|ghu|ghs|ghr|github_pat)_[a-zA-Z0-9_]{36,255}\b",
    ),
    ("slack-token", r"\bxox[abposr]-[0-9A-Za-z-]{10,250}"),
    (
        "jwt",
        r"\bey[a-zA-Z0-9_-]{17,}\.ey[a-zA-Z0-9_-]{17,}\.[a-zA-Z0-9_-]{10,}",
    ),
    ("bearer-token", r"(?i)\bbearer[ \t]+[A-Za-z0-9._~+/=-]{16,}"),
];

/// Candidates for a mandate: long base64url runs, confirmed by decoding.
const MANDATE: &str = r"[A-Za-z0-9_-]{100,}={0,2}";

impl Scanner {
    /// The built-in credential scanners, all doing `action`.
    pub fn credentials(action: Action) -> Vec<Scanner> {
        let mut all: Vec<Scanner> = CREDENTIALS
            .iter()
            .filter_map(|(name, pattern)| {
                Some(Scanner {
                    name: (*name).to_owned(),
                    regex: Regex::new(pattern).ok()?,
                    action,
                    biscuit_only: false,
                })
            })
            .collect();
        if let Ok(regex) = Regex::new(MANDATE) {
            all.push(Scanner {
                name: "mandate".to_owned(),
                regex,
                action,
                biscuit_only: true,
            });
        }
        all
    }

    /// A configured pattern; the regex is bounded in size.
    pub fn pattern(name: &str, pattern: &str, action: Action) -> Result<Scanner, String> {
        let regex = regex::RegexBuilder::new(pattern)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| e.to_string().lines().last().unwrap_or("invalid").to_owned())?;
        Ok(Scanner {
            name: name.to_owned(),
            regex,
            action,
            biscuit_only: false,
        })
    }

    fn matches(&self, text: &str) -> Vec<(usize, usize)> {
        self.regex
            .find_iter(text)
            .filter(|m| !self.biscuit_only || is_biscuit(m.as_str()))
            .map(|m| (m.start(), m.end()))
            .collect()
    }
}

/// Whether `text` decodes as a Biscuit token (what a mandate is, attenuated or not).
fn is_biscuit(text: &str) -> bool {
    text.len() <= crate::token::MAX_TOKEN_BYTES
        && biscuit_auth::UnverifiedBiscuit::from_base64(text).is_ok()
}

impl Scanners {
    /// Scans every string in `value`, redacting in place; a blocking match stops the scan.
    pub fn scan(&self, value: &mut Value) -> Findings {
        let mut findings = Findings::default();
        if !self.0.is_empty() {
            self.walk(value, &mut findings);
        }
        findings
    }

    fn walk(&self, value: &mut Value, findings: &mut Findings) {
        if findings.blocked.is_some() {
            return;
        }
        match value {
            Value::String(text) => {
                if let Some(clean) = self.scan_text(text, findings) {
                    *text = clean;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.walk(v, findings)),
            Value::Object(members) => members.values_mut().for_each(|v| self.walk(v, findings)),
            _ => {}
        }
    }

    /// The text with every redacting match replaced, or `None` when nothing matched.
    fn scan_text(&self, text: &str, findings: &mut Findings) -> Option<String> {
        let mut current: Option<String> = None;
        for scanner in &self.0 {
            let subject = current.as_deref().unwrap_or(text);
            let found = scanner.matches(subject);
            if found.is_empty() {
                continue;
            }
            if scanner.action == Action::Block {
                findings.blocked = Some(scanner.name.clone());
                return None;
            }
            let mut clean = String::with_capacity(subject.len());
            let mut last = 0;
            for (start, end) in found {
                clean.push_str(&subject[last..start]);
                clean.push_str(&format!("[REDACTED:{}]", scanner.name));
                last = end;
            }
            clean.push_str(&subject[last..]);
            if !findings.redacted.contains(&scanner.name) {
                findings.redacted.push(scanner.name.clone());
            }
            current = Some(clean);
        }
        current
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn credentials_are_redacted_wherever_they_are_and_the_rest_is_kept() {
        let scanners = Scanners(Scanner::credentials(Action::Redact));
        let key = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIB\n-----END PRIVATE KEY-----";
        let mut answer = json!({
            "content": [{"type": "text", "text": format!("id AKIAIOSFODNN7EXAMPLE and\n{key}\nok")}],
            "structuredContent": {"result": "Authorization: Bearer abcdefghijklmnopqrstuvwxyz012345"},
            "count": 3
        });
        let findings = scanners.scan(&mut answer);
        let text = answer["content"][0]["text"].as_str().unwrap_or_default();
        assert_eq!(
            text,
            "id [REDACTED:aws-access-key] and\n[REDACTED:private-key]\nok"
        );
        assert_eq!(
            answer["structuredContent"]["result"],
            "Authorization: [REDACTED:bearer-token]"
        );
        assert_eq!(answer["count"], 3);
        assert_eq!(
            findings.redacted,
            ["private-key", "aws-access-key", "bearer-token"]
        );
        assert_eq!(findings.blocked, None);
    }

    #[test]
    fn every_built_in_scanner_compiles() {
        assert_eq!(
            Scanner::credentials(Action::Redact).len(),
            CREDENTIALS.len() + 1
        );
    }

    #[test]
    fn a_blocking_pattern_withholds_the_answer() {
        let scanners = Scanners(vec![Scanner::pattern(
            "ticket",
            "TKT-[0-9]{6}",
            Action::Block,
        )
        .unwrap()]);
        let mut answer = json!({"text": ["fine", "see TKT-123456"]});
        let findings = scanners.scan(&mut answer);
        assert_eq!(findings.blocked.as_deref(), Some("ticket"));
        let mut clean = json!({"text": "TKT-12"});
        assert_eq!(scanners.scan(&mut clean), Findings::default());
    }

    #[test]
    fn only_long_runs_that_decode_as_biscuits_count_as_mandates() {
        let scanners = Scanners(Scanner::credentials(Action::Redact));
        let mut hash = json!("a".repeat(120));
        assert_eq!(scanners.scan(&mut hash), Findings::default());
        let root = biscuit_auth::KeyPair::new();
        let token = biscuit_auth::Biscuit::builder()
            .fact("user(\"alice\")")
            .and_then(|b| b.build(&root))
            .and_then(|b| b.to_base64())
            .unwrap_or_default();
        let mut leak = json!(format!("here: {token} done"));
        let findings = scanners.scan(&mut leak);
        assert_eq!(findings.redacted, ["mandate"]);
        assert_eq!(leak, "here: [REDACTED:mandate] done");
    }
}
