//! The `hcctl txn` mini-language, parsed by clap value parsers so a mistake is a usage error.
//!
//! Conditions (`--if`): `value(KEY) = VALUE`, `version(KEY) = N`, `mod(KEY) = N`,
//! `create(KEY) = N`, `lease(KEY) = ID`, `exists(KEY)`, `missing(KEY)`. The key is everything
//! between the first `(` and the first `)` that is followed by `=` (or ends the condition); the
//! value is the rest after `=`, trimmed, with one pair of surrounding double quotes removed
//! (`value(k) = " padded "` keeps the spaces).
//!
//! Ops (`--then`, `--else`): `put KEY VALUE`, `del KEY`, `get KEY`. Keys are one word; a put's
//! value is the rest of the text after the key, verbatim apart from the separating whitespace,
//! again with one pair of surrounding double quotes removed.

use hypercache_client::{Compare, LeaseId, Op};

/// A `--if`, `--then` or `--else` text that does not parse. clap prints it as a usage error
/// (exit 64), so the message quotes the text, says what is wrong and shows the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyntaxError {
    #[error(
        "condition {text:?}: {why}; expected value(k) = v, version(k) = N, mod(k) = N, create(k) = N, \
         lease(k) = ID, exists(k) or missing(k)"
    )]
    Condition { text: String, why: String },
    #[error("op {text:?}: {why}; expected put KEY VALUE, del KEY or get KEY")]
    Op { text: String, why: String },
}

/// A parsed `--then` / `--else` op, with what is needed to label its result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnOp {
    pub op: Op,
    /// `get`, `put` or `del`.
    pub verb: &'static str,
    pub key: String,
}

/// Removes one pair of surrounding double quotes.
fn unquote(s: &str) -> &str {
    s.strip_prefix('"').and_then(|rest| rest.strip_suffix('"')).unwrap_or(s)
}

/// Parses one `--if` condition.
pub fn parse_condition(text: &str) -> Result<Compare, SyntaxError> {
    let bad = |why: &str| SyntaxError::Condition { text: text.to_string(), why: why.to_string() };
    let s = text.trim();
    let open = s.find('(').ok_or_else(|| bad("missing '('"))?;
    let function = s[..open].trim();
    let after = &s[open + 1..];
    // The key ends at the first ')' followed by '=' or by the end of the condition.
    let mut split = None;
    for (i, _) in after.match_indices(')') {
        let rest = after[i + 1..].trim_start();
        if rest.is_empty() || rest.starts_with('=') {
            split = Some((&after[..i], rest));
            break;
        }
    }
    let (key, rest) = split.ok_or_else(|| bad("missing ')'"))?;
    if key.is_empty() {
        return Err(bad("empty key"));
    }
    match function {
        "exists" | "missing" => {
            if !rest.is_empty() {
                return Err(bad(&format!("{function}(k) takes no '= value'")));
            }
            Ok(if function == "exists" { Compare::exists(key.to_string()) } else { Compare::missing(key.to_string()) })
        }
        _ => {
            let value = rest.strip_prefix('=').ok_or_else(|| bad("missing '= value'"))?.trim();
            let number = || value.parse::<u64>().map_err(|_| bad(&format!("{value:?} is not a non-negative integer")));
            let key = key.to_string();
            match function {
                "value" => Ok(Compare::value(key, unquote(value).to_string())),
                "version" => Ok(Compare::version(key, number()?)),
                "mod" | "mod_revision" => Ok(Compare::mod_revision(key, number()?)),
                "create" | "create_revision" => Ok(Compare::create_revision(key, number()?)),
                "lease" => Ok(Compare::lease(key, LeaseId(number()?))),
                other => Err(bad(&format!("unknown function {other:?}"))),
            }
        }
    }
}

/// Parses one `--then` / `--else` op.
pub fn parse_op(text: &str) -> Result<TxnOp, SyntaxError> {
    let bad = |why: &str| SyntaxError::Op { text: text.to_string(), why: why.to_string() };
    let s = text.trim_start();
    let (verb, rest) = s.split_once(char::is_whitespace).ok_or_else(|| bad("missing key"))?;
    let rest = rest.trim_start();
    let (key, value) = match rest.split_once(char::is_whitespace) {
        Some((key, value)) => (key, Some(value.trim_start())),
        None => (rest, None),
    };
    if key.is_empty() {
        return Err(bad("missing key"));
    }
    let key_owned = key.to_string();
    match (verb, value) {
        ("put", Some(value)) => {
            Ok(TxnOp { op: Op::put(key_owned.clone(), unquote(value).to_string()), verb: "put", key: key_owned })
        }
        ("put", None) => Err(bad("put needs a value")),
        ("get", None) => Ok(TxnOp { op: Op::get(key_owned.clone()), verb: "get", key: key_owned }),
        ("del" | "delete", None) => Ok(TxnOp { op: Op::delete(key_owned.clone()), verb: "del", key: key_owned }),
        ("get" | "del" | "delete", Some(_)) => Err(bad("keys are one word; only put takes a value")),
        (other, _) => Err(bad(&format!("unknown op {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_parse_into_compares() {
        let cases = [
            ("value(k) = v", Compare::value("k", "v")),
            ("value(k)=v w", Compare::value("k", "v w")),
            ("value(k) = \" padded \"", Compare::value("k", " padded ")),
            ("version(k) = 3", Compare::version("k", 3)),
            ("mod(k) = 5", Compare::mod_revision("k", 5)),
            ("mod_revision(user:1) = 5", Compare::mod_revision("user:1", 5)),
            ("create(k) = 0", Compare::create_revision("k", 0)),
            ("lease(k) = 7", Compare::lease("k", LeaseId(7))),
            ("exists(k)", Compare::exists("k")),
            (" missing(a/b) ", Compare::missing("a/b")),
            // A ')' not followed by '=' belongs to the key.
            ("value(f(x)) = 1", Compare::value("f(x)", "1")),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_condition(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn malformed_conditions_are_explained() {
        for text in [
            "k = v",
            "value(k)",
            "version(k) = x",
            "mod(k) = -1",
            "exists()",
            "exists(k) = 1",
            "size(k) = 3",
            "value(k = v",
        ] {
            let err = parse_condition(text).expect_err(text).to_string();
            assert!(err.contains(&format!("{text:?}")) && err.contains("expected"), "{err}");
        }
    }

    #[test]
    fn ops_parse_with_verbatim_values() {
        let put = parse_op("put k hello world").expect("put");
        assert_eq!((put.op, put.verb, put.key.as_str()), (Op::put("k", "hello world"), "put", "k"));
        assert_eq!(parse_op("put k \"\"").expect("empty value").op, Op::put("k", ""));
        assert_eq!(parse_op("get k").expect("get").op, Op::get("k"));
        let del = parse_op("delete  k").expect("delete");
        assert_eq!((del.op, del.verb), (Op::delete("k"), "del"));
        for text in ["put k", "get", "get k extra", "incr k", ""] {
            assert!(parse_op(text).is_err(), "{text}");
        }
    }
}
