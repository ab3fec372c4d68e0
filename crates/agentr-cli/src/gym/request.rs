//! Reading request bodies and query strings the way AgentGym's servers (FastAPI with pydantic
//! models) read them, and their 422 answer when a request does not fit: `{"detail": [{"type",
//! "loc", "msg"}, ...]}` with one entry per bad field. Total: any bytes give fields or details,
//! never a panic.

use serde::Serialize;
use serde_json::{Map, Value, json};

/// One reason a request was refused, as FastAPI lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detail {
    /// pydantic's error type, e.g. `missing`, `int_parsing`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Where: `["body", field]` or `["query", name]`.
    pub loc: Vec<Value>,
    /// pydantic's message.
    pub msg: String,
    /// Context (the JSON parser's message for a body that is not JSON).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ctx: Option<Value>,
}

impl Detail {
    fn new(kind: &'static str, loc: Vec<Value>, msg: &str) -> Self {
        Detail {
            kind,
            loc,
            msg: msg.to_owned(),
            ctx: None,
        }
    }
}

/// The fields of a JSON object body. Getters record a [`Detail`] for a missing or mistyped
/// field and return a placeholder; [`Fields::check`] then refuses the request, so a
/// placeholder is never used.
#[derive(Debug)]
pub struct Fields {
    map: Map<String, Value>,
    details: Vec<Detail>,
}

impl Fields {
    /// The body as an object: FastAPI's answer for an empty body, one that is not JSON, or one
    /// that is not an object.
    pub fn parse(body: &[u8]) -> Result<Fields, Vec<Detail>> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(vec![Detail::new(
                "missing",
                vec![json!("body")],
                "Field required",
            )]);
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => Ok(Fields {
                map,
                details: Vec::new(),
            }),
            Ok(_) => Err(vec![Detail::new(
                "model_attributes_type",
                vec![json!("body")],
                "Input should be a valid dictionary or object to extract fields from",
            )]),
            Err(error) => Err(vec![Detail {
                ctx: Some(json!({"error": error.to_string()})),
                ..Detail::new(
                    "json_invalid",
                    vec![json!("body"), json!(error.column())],
                    "JSON decode error",
                )
            }]),
        }
    }

    fn fail(&mut self, kind: &'static str, name: &str, msg: &str) {
        self.details
            .push(Detail::new(kind, vec![json!("body"), json!(name)], msg));
    }

    /// A required integer field (0 if it is missing or not an integer).
    pub fn int(&mut self, name: &str) -> i64 {
        match self.map.get(name) {
            None => {
                self.fail("missing", name, "Field required");
                0
            }
            Some(value) => self.read_int(name, value.clone()).unwrap_or(0),
        }
    }

    /// An optional integer field: absent or null is `None`.
    pub fn optional_int(&mut self, name: &str) -> Option<i64> {
        match self.map.get(name) {
            None | Some(Value::Null) => None,
            Some(value) => self.read_int(name, value.clone()),
        }
    }

    fn read_int(&mut self, name: &str, value: Value) -> Option<i64> {
        match int_of(&value) {
            Ok(n) => Some(n),
            Err((kind, msg)) => {
                self.fail(kind, name, msg);
                None
            }
        }
    }

    /// A required string field (empty if it is missing or not a string).
    pub fn string(&mut self, name: &str) -> String {
        match self.map.get_mut(name) {
            Some(Value::String(s)) => std::mem::take(s),
            None => {
                self.fail("missing", name, "Field required");
                String::new()
            }
            Some(_) => {
                self.fail("string_type", name, "Input should be a valid string");
                String::new()
            }
        }
    }

    /// An optional string field: absent or null is `None`.
    pub fn optional_string(&mut self, name: &str) -> Option<String> {
        match self.map.get_mut(name) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(std::mem::take(s)),
            Some(_) => {
                self.fail("string_type", name, "Input should be a valid string");
                None
            }
        }
    }

    /// Every field read was present and well typed.
    pub fn check(self) -> Result<(), Vec<Detail>> {
        if self.details.is_empty() {
            Ok(())
        } else {
            Err(self.details)
        }
    }
}

/// pydantic's lax integer: an integer, a float without a fraction, or a string of one.
fn int_of(value: &Value) -> Result<i64, (&'static str, &'static str)> {
    const NOT_INT: (&str, &str) = ("int_type", "Input should be a valid integer");
    match value {
        Value::Number(n) => {
            if let Some(n) = n.as_i64() {
                Ok(n)
            } else if let Some(f) = n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18) {
                Ok(f as i64)
            } else if n.is_f64() {
                Err((
                    "int_from_float",
                    "Input should be a valid integer, got a number with a fractional part",
                ))
            } else {
                Err(NOT_INT)
            }
        }
        Value::String(s) => s.trim().parse().map_err(|_| {
            (
                "int_parsing",
                "Input should be a valid integer, unable to parse string as an integer",
            )
        }),
        _ => Err(NOT_INT),
    }
}

/// The integer query parameter `name` of `query` (the part of the URI after `?`).
pub fn query_int(query: Option<&str>, name: &str) -> Result<i64, Vec<Detail>> {
    let loc = || vec![json!("query"), json!(name)];
    let value = query
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value);
    match value {
        None => Err(vec![Detail::new("missing", loc(), "Field required")]),
        Some(value) => int_of(&Value::String(value.to_owned()))
            .map_err(|(kind, msg)| vec![Detail::new(kind, loc(), msg)]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `(id, action)` of a step body, or the details' types and locations.
    fn step(body: &str) -> Result<(i64, String), Vec<(&'static str, String)>> {
        let brief = |details: Vec<Detail>| {
            details
                .into_iter()
                .map(|d| (d.kind, Value::Array(d.loc).to_string()))
                .collect::<Vec<_>>()
        };
        let mut fields = Fields::parse(body.as_bytes()).map_err(brief)?;
        let id = fields.int("id");
        let action = fields.string("action");
        fields.check().map_err(brief)?;
        Ok((id, action))
    }

    #[test]
    fn bodies_are_read_like_pydantic() {
        let ok = |id: i64, action: &str| Ok((id, action.to_owned()));
        let bad = |list: &[(&'static str, &str)]| {
            Err(list
                .iter()
                .map(|(k, l)| (*k, l.to_string()))
                .collect::<Vec<_>>())
        };
        let cases = [
            (r#"{"id": 3, "action": "inventory"}"#, ok(3, "inventory")),
            (r#"{"id": "4", "action": "", "extra": [1]}"#, ok(4, "")),
            (r#"{"id": 5.0, "action": "x"}"#, ok(5, "x")),
            (r#"{"id": -1, "action": "x"}"#, ok(-1, "x")),
            ("", bad(&[("missing", r#"["body"]"#)])),
            ("  \n", bad(&[("missing", r#"["body"]"#)])),
            ("{", bad(&[("json_invalid", r#"["body",1]"#)])),
            ("[1]", bad(&[("model_attributes_type", r#"["body"]"#)])),
            (
                "{}",
                bad(&[
                    ("missing", r#"["body","id"]"#),
                    ("missing", r#"["body","action"]"#),
                ]),
            ),
            (
                r#"{"id": 1.5, "action": 7}"#,
                bad(&[
                    ("int_from_float", r#"["body","id"]"#),
                    ("string_type", r#"["body","action"]"#),
                ]),
            ),
            (
                r#"{"id": "x", "action": "a"}"#,
                bad(&[("int_parsing", r#"["body","id"]"#)]),
            ),
            (
                r#"{"id": null, "action": "a"}"#,
                bad(&[("int_type", r#"["body","id"]"#)]),
            ),
            (
                r#"{"id": 18446744073709551615, "action": "a"}"#,
                bad(&[("int_type", r#"["body","id"]"#)]),
            ),
        ];
        for (body, want) in cases {
            assert_eq!(step(body), want, "{body}");
        }
        let mut fields = Fields::parse(br#"{"goal": null, "data_idx": 7}"#).unwrap();
        assert_eq!(fields.optional_string("goal"), None);
        assert_eq!(fields.optional_string("commands"), None);
        assert_eq!(fields.optional_int("data_idx"), Some(7));
        assert_eq!(fields.optional_int("session_id"), None);
        assert!(fields.check().is_ok());
    }

    #[test]
    fn query_parameters_are_read_like_pydantic() {
        assert_eq!(query_int(Some("id=12"), "id"), Ok(12));
        assert_eq!(query_int(Some("x=1&env_idx=-3"), "env_idx"), Ok(-3));
        for (query, kind) in [
            (None, "missing"),
            (Some(""), "missing"),
            (Some("ids=1"), "missing"),
            (Some("id="), "int_parsing"),
            (Some("id=two"), "int_parsing"),
        ] {
            let details = query_int(query, "id").unwrap_err();
            assert_eq!(details[0].kind, kind, "{query:?}");
            assert_eq!(details[0].loc, [json!("query"), json!("id")]);
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bodies_give_fields_or_details(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            match Fields::parse(&bytes) {
                Ok(mut fields) => {
                    fields.int("id");
                    fields.optional_int("data_idx");
                    fields.string("action");
                    fields.optional_string("goal");
                    if let Err(details) = fields.check() {
                        prop_assert!(!details.is_empty());
                    }
                }
                Err(details) => prop_assert!(!details.is_empty()),
            }
        }

        #[test]
        fn arbitrary_json_objects_never_panic(id in any::<f64>(), text in ".{0,20}", n in any::<i64>()) {
            for body in [
                json!({"id": id, "action": text}),
                json!({"id": text, "action": n}),
                json!({"id": n, "action": text, "data_idx": id}),
            ] {
                let mut fields = Fields::parse(body.to_string().as_bytes()).unwrap();
                let got = fields.int("id");
                fields.optional_int("data_idx");
                fields.string("action");
                if fields.check().is_ok() {
                    prop_assert!(body["id"].as_i64().is_none_or(|want| want == got));
                }
            }
        }

        #[test]
        fn arbitrary_queries_never_panic(query in ".{0,40}") {
            let _ = query_int(Some(&query), "id");
        }
    }
}
