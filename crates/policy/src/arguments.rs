//! JSON arguments → the Cedar record `context.arguments`, within bounds.
//!
//! | JSON | Cedar |
//! |---|---|
//! | string | `String` |
//! | integer that fits `i64` | `Long` |
//! | any other number (fractions, exponents, beyond `i64`) | `String` of its JSON text: Cedar has no floats, and a string keeps the value comparable with `==` and `like` |
//! | `true` / `false` | `Bool` |
//! | array | `Set` (unordered, duplicates merged: Cedar has no lists) |
//! | object | `Record` |
//! | `null` | the attribute (or set element) is left out, so `has` is false |
//!
//! Bounds, because the arguments come straight from the client: at most
//! [`MAX_ARGUMENT_DEPTH`] nested objects/arrays (the arguments object
//! itself is depth 1), at most [`MAX_ARGUMENT_VALUES`] values in all, strings
//! and attribute names at most [`MAX_ARGUMENT_STRING_BYTES`]. What lies
//! beyond a bound is dropped and the conversion reports it; the caller
//! then denies if any policy reads the arguments, since a dropped value is
//! one a `forbid` might have matched (or an `unless`/`!has` might have
//! needed).

use cedar_policy::RestrictedExpression;
use serde_json::Value;

/// Deepest nesting of objects and arrays converted; the arguments object
/// is depth 1.
pub const MAX_ARGUMENT_DEPTH: usize = 8;
/// Most values converted in all (attributes and set elements, at every
/// depth).
pub const MAX_ARGUMENT_VALUES: usize = 256;
/// Longest string (value or attribute name) converted, in bytes.
pub const MAX_ARGUMENT_STRING_BYTES: usize = 4096;

/// The converted record, and why something was dropped (if it was).
#[derive(Debug)]
pub(crate) struct Converted {
    pub record: RestrictedExpression,
    pub dropped: Option<&'static str>,
}

/// Converts the arguments object. `None` and `null` give an empty record;
/// any other non-object is dropped whole.
pub(crate) fn convert(arguments: Option<&Value>) -> Converted {
    let mut c = Converter {
        budget: MAX_ARGUMENT_VALUES,
        dropped: None,
    };
    let record = match arguments {
        None | Some(Value::Null) => empty_record(),
        Some(Value::Object(map)) => c.record(map, 1).unwrap_or_else(empty_record),
        Some(_) => {
            c.dropped = Some("the arguments are not a JSON object");
            empty_record()
        }
    };
    Converted {
        record,
        dropped: c.dropped,
    }
}

pub(crate) fn empty_record() -> RestrictedExpression {
    #[allow(clippy::expect_used)]
    // Invariant: a record of no pairs has no duplicate keys, the only error.
    RestrictedExpression::new_record(std::iter::empty()).expect("an empty record is valid")
}

struct Converter {
    budget: usize,
    dropped: Option<&'static str>,
}

impl Converter {
    fn drop(&mut self, why: &'static str) -> Option<RestrictedExpression> {
        self.dropped.get_or_insert(why);
        None
    }

    fn take(&mut self) -> bool {
        if self.budget == 0 {
            self.dropped
                .get_or_insert("the arguments hold more values than the policy bound");
            return false;
        }
        self.budget -= 1;
        true
    }

    fn record(
        &mut self,
        map: &serde_json::Map<String, Value>,
        depth: usize,
    ) -> Option<RestrictedExpression> {
        let mut pairs = Vec::with_capacity(map.len().min(self.budget));
        for (k, v) in map {
            if k.len() > MAX_ARGUMENT_STRING_BYTES {
                self.drop("an argument name is longer than the policy bound");
                continue;
            }
            if !self.take() {
                break;
            }
            if let Some(v) = self.value(v, depth) {
                pairs.push((k.clone(), v));
            }
        }
        match RestrictedExpression::new_record(pairs) {
            Ok(r) => Some(r),
            // A JSON object has distinct keys, so this does not happen.
            Err(_) => self.drop("the arguments repeat an attribute"),
        }
    }

    fn set(&mut self, items: &[Value], depth: usize) -> RestrictedExpression {
        let mut out = Vec::with_capacity(items.len().min(self.budget));
        for v in items {
            if !self.take() {
                break;
            }
            if let Some(v) = self.value(v, depth) {
                out.push(v);
            }
        }
        RestrictedExpression::new_set(out)
    }

    /// Converts a value found inside a container at `depth`.
    fn value(&mut self, v: &Value, depth: usize) -> Option<RestrictedExpression> {
        match v {
            Value::Null => None,
            Value::Bool(b) => Some(RestrictedExpression::new_bool(*b)),
            Value::Number(n) => Some(match n.as_i64() {
                Some(i) => RestrictedExpression::new_long(i),
                None => RestrictedExpression::new_string(n.to_string()),
            }),
            Value::String(s) if s.len() > MAX_ARGUMENT_STRING_BYTES => {
                self.drop("an argument string is longer than the policy bound")
            }
            Value::String(s) => Some(RestrictedExpression::new_string(s.clone())),
            Value::Array(_) | Value::Object(_) if depth >= MAX_ARGUMENT_DEPTH => {
                self.drop("the arguments are nested deeper than the policy bound")
            }
            Value::Array(items) => Some(self.set(items, depth + 1)),
            Value::Object(map) => self.record(map, depth + 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn text(c: &Converted) -> String {
        format!("{:?}", c.record)
    }

    #[test]
    fn converts_each_json_kind() {
        let c = convert(Some(&json!({
            "s": "x", "i": -3, "f": 1.5, "big": 18446744073709551615u64,
            "b": true, "a": [1, 1, null], "o": {"k": "v"}, "n": null
        })));
        assert_eq!(c.dropped, None);
        let t = text(&c);
        for needle in [
            "\"x\"",
            "-3",
            "\"1.5\"",
            "\"18446744073709551615\"",
            "true",
            "\"v\"",
        ] {
            assert!(t.contains(needle), "{needle} in {t}");
        }
        assert!(!t.contains("\"n\""), "{t}");
    }

    #[test]
    fn depth_bound_drops_and_reports() {
        let mut v = json!("leaf");
        for _ in 0..MAX_ARGUMENT_DEPTH {
            v = json!({ "d": v });
        }
        assert_eq!(
            convert(Some(&v)).dropped,
            None,
            "depth {MAX_ARGUMENT_DEPTH} fits"
        );
        let v = json!({ "d": v });
        assert!(convert(Some(&v)).dropped.is_some());
    }

    #[test]
    fn value_count_bound_drops_and_reports() {
        let fits: serde_json::Map<_, _> = (0..MAX_ARGUMENT_VALUES)
            .map(|i| (format!("k{i}"), json!(i)))
            .collect();
        assert_eq!(convert(Some(&Value::Object(fits.clone()))).dropped, None);
        let mut over = fits;
        over.insert("one_more".into(), json!(1));
        assert!(convert(Some(&Value::Object(over))).dropped.is_some());
        let nested = json!({ "a": (0..MAX_ARGUMENT_VALUES).collect::<Vec<_>>() });
        assert!(convert(Some(&nested)).dropped.is_some());
    }

    #[test]
    fn string_bound_drops_and_reports() {
        let ok = "x".repeat(MAX_ARGUMENT_STRING_BYTES);
        assert_eq!(convert(Some(&json!({ "p": ok }))).dropped, None);
        let long = "x".repeat(MAX_ARGUMENT_STRING_BYTES + 1);
        assert!(convert(Some(&json!({ "p": long }))).dropped.is_some());
        assert!(convert(Some(&json!({ long: 1 }))).dropped.is_some());
    }

    #[test]
    fn non_object_arguments_are_dropped_and_null_is_empty() {
        assert!(convert(Some(&json!([1]))).dropped.is_some());
        assert_eq!(convert(Some(&Value::Null)).dropped, None);
        assert_eq!(convert(None).dropped, None);
    }
}
