//! Proto3 JSON at the REST edge: lenient decoding with errors that name the field, canonical
//! encoding, `Any` rendering for Operations, and `$alt=json;enum-encoding=int` support.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use stratus_types::Status;
use stratus_types::proto::google::longrunning::{Operation, operation};
use stratus_types::proto::google::rpc;
use stratus_types::proto::prost::Message;
use stratus_types::proto::tasks::{
    self, BatchCreateTasksMetadata, BatchCreateTasksResponse, BatchDeleteTasksMetadata, HttpMethod,
};
use stratus_types::proto::wkt::Any;

/// Query parameters of a REST call.
#[derive(Debug, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Parses a raw query string (`a=b&c=d`, percent- and plus-decoded).
    pub fn parse(raw: &str) -> Self {
        Query {
            pairs: form_urlencoded::parse(raw.as_bytes())
                .into_owned()
                .collect(),
        }
    }

    /// The value of `camel` or its snake_case spelling `snake`; empty values count as absent.
    pub fn get(&self, camel: &str, snake: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, v)| (k == camel || k == snake) && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// All values of a repeated parameter.
    pub fn all(&self, camel: &str, snake: &str) -> Vec<String> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == camel || k == snake)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// An int32 parameter (absent = 0).
    pub fn int(&self, camel: &str, snake: &str) -> Result<i32, Status> {
        match self.get(camel, snake) {
            None => Ok(0),
            Some(v) => v.parse().map_err(|_| {
                Status::invalid(format!("Invalid value at '{snake}' (TYPE_INT32), \"{v}\"."))
            }),
        }
    }

    /// The `response_view` parameter: an integer or a `Task.View` name.
    pub fn view(&self) -> Result<i32, Status> {
        match self.get("responseView", "response_view") {
            None => Ok(0),
            Some(v) => v
                .parse()
                .ok()
                .or_else(|| tasks::task::View::from_str_name(v).map(|v| v as i32))
                .ok_or_else(|| Status::invalid(format!("Invalid value at 'response_view' (type.googleapis.com/google.cloud.tasks.v2.Task.View), \"{v}\"."))),
        }
    }

    /// Whether the caller asked for integer enums (`$alt=json;enum-encoding=int`).
    pub fn int_enums(&self) -> bool {
        self.pairs
            .iter()
            .any(|(k, v)| (k == "$alt" || k == "alt") && v.contains("enum-encoding=int"))
    }
}

/// Decodes a request message from a JSON body (empty means `{}`). Unknown fields, wrong types
/// and malformed JSON become INVALID_ARGUMENT naming the field path.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, Status> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = inner.to_string();
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        if path == "." || path.is_empty() {
            Status::invalid(format!("Invalid JSON payload received. {msg}."))
        } else {
            Status::invalid(format!(
                "Invalid JSON payload received. Invalid value at '{path}': {msg}."
            ))
        }
    })
}

/// Encodes a message as canonical proto3 JSON.
pub fn encode<T: Serialize>(m: &T) -> Value {
    let mut v = serde_json::to_value(m).unwrap_or(Value::Null);
    utc_z(&mut v);
    v
}

/// Timestamps print as `…Z` (proto3 JSON's canonical form), not `…+00:00`.
fn utc_z(v: &mut Value) {
    match v {
        Value::Array(items) => items.iter_mut().for_each(utc_z),
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                match val {
                    Value::String(s) if k.ends_with("Time") => {
                        if let Some(base) = s.strip_suffix("+00:00") {
                            *s = format!("{base}Z");
                        }
                    }
                    _ => utc_z(val),
                }
            }
        }
        _ => {}
    }
}

/// The proto3 JSON of a `google.rpc.Status` (details rendered as typed `Any`s).
pub fn status_json(s: &rpc::Status) -> Value {
    let mut o = Map::new();
    if s.code != 0 {
        o.insert("code".into(), json!(s.code));
    }
    if !s.message.is_empty() {
        o.insert("message".into(), json!(s.message));
    }
    if !s.details.is_empty() {
        o.insert(
            "details".into(),
            Value::Array(s.details.iter().map(any_json).collect()),
        );
    }
    Value::Object(o)
}

fn with_type(mut v: Value, type_url: &str) -> Value {
    let mut o = Map::new();
    o.insert("@type".into(), json!(type_url));
    if let Value::Object(m) = &mut v {
        o.append(m);
    }
    Value::Object(o)
}

fn failed_requests_json(v: &mut Value, failed: &std::collections::BTreeMap<i32, rpc::Status>) {
    if !failed.is_empty() {
        let m: Map<String, Value> = failed
            .iter()
            .map(|(k, s)| (k.to_string(), status_json(s)))
            .collect();
        v["failedRequests"] = Value::Object(m);
    }
}

/// The proto3 JSON of an `Any` holding one of the messages Stratus packs.
pub fn any_json(a: &Any) -> Value {
    let name = a.type_url.rsplit('/').next().unwrap_or("");
    let v = match name {
        "google.cloud.tasks.v2.BatchCreateTasksResponse" => {
            BatchCreateTasksResponse::decode(a.value.clone()).map(|m| encode(&m))
        }
        "google.cloud.tasks.v2.BatchCreateTasksMetadata" => {
            BatchCreateTasksMetadata::decode(a.value.clone()).map(|m| {
                let failed = m.failed_requests.clone();
                let mut v = encode(&BatchCreateTasksMetadata {
                    failed_requests: Default::default(),
                    ..m
                });
                failed_requests_json(&mut v, &failed);
                v
            })
        }
        "google.cloud.tasks.v2.BatchDeleteTasksMetadata" => {
            BatchDeleteTasksMetadata::decode(a.value.clone()).map(|m| {
                let failed = m.failed_requests.clone();
                let mut v = encode(&BatchDeleteTasksMetadata {
                    failed_requests: Default::default(),
                    ..m
                });
                failed_requests_json(&mut v, &failed);
                v
            })
        }
        "google.rpc.Help" => rpc::Help::decode(a.value.clone()).map(|m| encode(&m)),
        _ => Ok(json!({})),
    };
    with_type(v.unwrap_or_else(|_| json!({})), &a.type_url)
}

/// The proto3 JSON of an Operation.
pub fn operation_json(op: &Operation) -> Value {
    let mut o = Map::new();
    o.insert("name".into(), json!(op.name));
    if let Some(m) = &op.metadata {
        o.insert("metadata".into(), any_json(m));
    }
    if op.done {
        o.insert("done".into(), json!(true));
    }
    match &op.result {
        Some(operation::Result::Error(s)) => {
            o.insert("error".into(), status_json(s));
        }
        Some(operation::Result::Response(a)) => {
            o.insert("response".into(), any_json(a));
        }
        None => {}
    }
    Value::Object(o)
}

/// Rewrites enum names to their numbers, for callers that asked for integer enums.
/// `type_url` is the `@type` of the enclosing Any, which decides what `state` means.
pub fn enums_to_int(v: &mut Value, type_url: Option<&str>) {
    match v {
        Value::Array(items) => items.iter_mut().for_each(|i| enums_to_int(i, type_url)),
        Value::Object(map) => {
            let own_type = map.get("@type").and_then(Value::as_str).map(str::to_string);
            let ty = own_type.as_deref().or(type_url);
            for (k, val) in map.iter_mut() {
                if let Value::String(s) = val {
                    if let Some(n) = enum_number(k, s, ty) {
                        *val = json!(n);
                    }
                } else {
                    enums_to_int(
                        val,
                        if k == "metadata" || k == "response" {
                            None
                        } else {
                            ty
                        },
                    );
                }
            }
        }
        _ => {}
    }
}

fn enum_number(key: &str, name: &str, ty: Option<&str>) -> Option<i32> {
    use tasks::uri_override::{Scheme, UriOverrideEnforceMode};
    match key {
        "httpMethod" => HttpMethod::from_str_name(name).map(|e| e as i32),
        "view" => tasks::task::View::from_str_name(name).map(|e| e as i32),
        "scheme" => Scheme::from_str_name(name).map(|e| e as i32),
        "uriOverrideEnforceMode" => UriOverrideEnforceMode::from_str_name(name).map(|e| e as i32),
        "state" => match ty.map(|t| t.rsplit('/').next().unwrap_or("")) {
            Some("google.cloud.tasks.v2.BatchCreateTasksMetadata") => {
                tasks::batch_create_tasks_metadata::State::from_str_name(name).map(|e| e as i32)
            }
            Some("google.cloud.tasks.v2.BatchDeleteTasksMetadata") => {
                tasks::batch_delete_tasks_metadata::State::from_str_name(name).map(|e| e as i32)
            }
            _ => tasks::queue::State::from_str_name(name).map(|e| e as i32),
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_field() {
        let e =
            decode::<tasks::CreateTaskRequest>(br#"{"task":{"dispatchDeadline":5}}"#).unwrap_err();
        assert!(e.message.contains("task.dispatchDeadline"), "{}", e.message);
        let e = decode::<tasks::CreateTaskRequest>(br#"{"task":{"colour":"red"}}"#).unwrap_err();
        assert!(e.message.contains("colour"), "{}", e.message);
        let e = decode::<tasks::CreateTaskRequest>(b"{not json").unwrap_err();
        assert!(
            e.message.starts_with("Invalid JSON payload received."),
            "{}",
            e.message
        );
    }

    #[test]
    fn int_enums() {
        let mut v = json!({"state":"PAUSED","tasks":[{"view":"FULL","httpRequest":{"httpMethod":"PUT"}}],
            "metadata":{"@type":"type.googleapis.com/google.cloud.tasks.v2.BatchDeleteTasksMetadata","state":"FAILED"}});
        enums_to_int(&mut v, None);
        assert_eq!(v["state"], 2);
        assert_eq!(v["tasks"][0]["view"], 2);
        assert_eq!(v["tasks"][0]["httpRequest"]["httpMethod"], 4);
        assert_eq!(v["metadata"]["state"], 4);
    }

    #[test]
    fn query() {
        let q = Query::parse(
            "pageSize=0&pageToken=&%24alt=json%3Benum-encoding%3Dint&responseView=FULL",
        );
        assert!(q.int_enums());
        assert_eq!(q.get("pageToken", "page_token"), None);
        assert_eq!(q.view().unwrap(), 2);
        assert!(
            Query::parse("pageSize=x")
                .int("pageSize", "page_size")
                .is_err()
        );
    }
}
