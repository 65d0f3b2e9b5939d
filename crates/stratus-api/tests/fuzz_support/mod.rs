//! Generators shared by the fuzz tests: structure-aware JSON bodies built from the real field
//! names of every message REST decodes, with wrong types, huge numbers, deep nesting, odd
//! strings and escapes, base64, duration and timestamp edge cases mixed in.

#![allow(dead_code, missing_docs)]

use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Map, Value};

/// Cases per property: `PROPTEST_CASES`, else `default`.
pub fn config(default: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    Config {
        cases,
        // Failures are reported with their minimal input; nothing is written to the tree.
        failure_persistence: None,
        ..Config::default()
    }
}

/// The shape of a proto3 JSON field.
#[derive(Clone, Debug)]
pub enum Shape {
    Str,
    Int32,
    Int64,
    Double,
    Bool,
    Bytes,
    Duration,
    Timestamp,
    FieldMask,
    Enum(&'static [&'static str]),
    Map(Box<Shape>),
    List(Box<Shape>),
    Msg(Vec<(&'static str, Shape)>),
}

use Shape::*;

const HTTP_METHODS: &[&str] = &[
    "HTTP_METHOD_UNSPECIFIED",
    "POST",
    "GET",
    "HEAD",
    "PUT",
    "DELETE",
    "PATCH",
    "OPTIONS",
];
const VIEWS: &[&str] = &["VIEW_UNSPECIFIED", "BASIC", "FULL"];

fn list(s: Shape) -> Shape {
    List(Box::new(s))
}

fn map(s: Shape) -> Shape {
    Map(Box::new(s))
}

fn oauth() -> Shape {
    Msg(vec![("serviceAccountEmail", Str), ("scope", Str)])
}

fn oidc() -> Shape {
    Msg(vec![("serviceAccountEmail", Str), ("audience", Str)])
}

fn routing() -> Shape {
    Msg(vec![
        ("service", Str),
        ("version", Str),
        ("instance", Str),
        ("host", Str),
    ])
}

fn attempt() -> Shape {
    Msg(vec![
        ("scheduleTime", Timestamp),
        ("dispatchTime", Timestamp),
        ("responseTime", Timestamp),
        (
            "responseStatus",
            Msg(vec![("code", Int32), ("message", Str)]),
        ),
    ])
}

/// `google.cloud.tasks.v2.Task`.
pub fn task() -> Shape {
    Msg(vec![
        ("name", Str),
        (
            "httpRequest",
            Msg(vec![
                ("url", Str),
                ("httpMethod", Enum(HTTP_METHODS)),
                ("headers", map(Str)),
                ("body", Bytes),
                ("oauthToken", oauth()),
                ("oidcToken", oidc()),
            ]),
        ),
        (
            "appEngineHttpRequest",
            Msg(vec![
                ("httpMethod", Enum(HTTP_METHODS)),
                ("appEngineRouting", routing()),
                ("relativeUri", Str),
                ("headers", map(Str)),
                ("body", Bytes),
            ]),
        ),
        ("scheduleTime", Timestamp),
        ("createTime", Timestamp),
        ("dispatchDeadline", Duration),
        ("dispatchCount", Int32),
        ("responseCount", Int32),
        ("firstAttempt", attempt()),
        ("lastAttempt", attempt()),
        ("view", Enum(VIEWS)),
    ])
}

/// `google.cloud.tasks.v2.Queue`.
pub fn queue() -> Shape {
    Msg(vec![
        ("name", Str),
        ("appEngineRoutingOverride", routing()),
        (
            "httpTarget",
            Msg(vec![
                (
                    "uriOverride",
                    Msg(vec![
                        ("scheme", Enum(&["SCHEME_UNSPECIFIED", "HTTP", "HTTPS"])),
                        ("host", Str),
                        ("port", Int64),
                        ("pathOverride", Msg(vec![("path", Str)])),
                        ("queryOverride", Msg(vec![("queryParams", Str)])),
                        (
                            "uriOverrideEnforceMode",
                            Enum(&[
                                "URI_OVERRIDE_ENFORCE_MODE_UNSPECIFIED",
                                "IF_NOT_EXISTS",
                                "ALWAYS",
                            ]),
                        ),
                    ]),
                ),
                ("httpMethod", Enum(HTTP_METHODS)),
                (
                    "headerOverrides",
                    list(Msg(vec![(
                        "header",
                        Msg(vec![("key", Str), ("value", Str)]),
                    )])),
                ),
                ("oauthToken", oauth()),
                ("oidcToken", oidc()),
            ]),
        ),
        (
            "rateLimits",
            Msg(vec![
                ("maxDispatchesPerSecond", Double),
                ("maxBurstSize", Int32),
                ("maxConcurrentDispatches", Int32),
            ]),
        ),
        (
            "retryConfig",
            Msg(vec![
                ("maxAttempts", Int32),
                ("maxRetryDuration", Duration),
                ("minBackoff", Duration),
                ("maxBackoff", Duration),
                ("maxDoublings", Int32),
            ]),
        ),
        (
            "state",
            Enum(&["STATE_UNSPECIFIED", "RUNNING", "PAUSED", "DISABLED"]),
        ),
        ("purgeTime", Timestamp),
        (
            "stackdriverLoggingConfig",
            Msg(vec![("samplingRatio", Double)]),
        ),
    ])
}

/// `CreateTaskRequest`.
pub fn create_task() -> Shape {
    Msg(vec![
        ("parent", Str),
        ("task", task()),
        ("responseView", Enum(VIEWS)),
    ])
}

/// `BatchCreateTasksRequest`.
pub fn batch_create() -> Shape {
    Msg(vec![
        ("parent", Str),
        ("requests", list(create_task())),
        ("requestId", Str),
    ])
}

/// `BatchDeleteTasksRequest`.
pub fn batch_delete() -> Shape {
    Msg(vec![
        ("parent", Str),
        ("names", list(Str)),
        ("requestId", Str),
    ])
}

/// `RunTaskRequest`.
pub fn run_task() -> Shape {
    Msg(vec![("name", Str), ("responseView", Enum(VIEWS))])
}

/// `PurgeQueueRequest`, `PauseQueueRequest`, `ResumeQueueRequest`.
pub fn named() -> Shape {
    Msg(vec![("name", Str)])
}

/// `google.iam.v1.SetIamPolicyRequest`.
pub fn set_iam() -> Shape {
    Msg(vec![
        ("resource", Str),
        (
            "policy",
            Msg(vec![
                ("version", Int32),
                (
                    "bindings",
                    list(Msg(vec![
                        ("role", Str),
                        ("members", list(Str)),
                        (
                            "condition",
                            Msg(vec![
                                ("expression", Str),
                                ("title", Str),
                                ("description", Str),
                                ("location", Str),
                            ]),
                        ),
                    ])),
                ),
                (
                    "auditConfigs",
                    list(Msg(vec![
                        ("service", Str),
                        (
                            "auditLogConfigs",
                            list(Msg(vec![
                                (
                                    "logType",
                                    Enum(&[
                                        "LOG_TYPE_UNSPECIFIED",
                                        "ADMIN_READ",
                                        "DATA_WRITE",
                                        "DATA_READ",
                                    ]),
                                ),
                                ("exemptedMembers", list(Str)),
                            ])),
                        ),
                    ])),
                ),
                ("etag", Bytes),
            ]),
        ),
        ("updateMask", FieldMask),
    ])
}

/// `google.iam.v1.GetIamPolicyRequest`.
pub fn get_iam() -> Shape {
    Msg(vec![
        ("resource", Str),
        ("options", Msg(vec![("requestedPolicyVersion", Int32)])),
    ])
}

/// `google.iam.v1.TestIamPermissionsRequest`.
pub fn test_iam() -> Shape {
    Msg(vec![("resource", Str), ("permissions", list(Str))])
}

/// `CmekConfig`.
pub fn cmek() -> Shape {
    Msg(vec![("name", Str), ("kmsKey", Str)])
}

/// Placeholder strings replaced by raw JSON text after serialisation: numbers `Value` cannot
/// hold (`1e999`, 400-digit integers), lone surrogate escapes, raw deep nesting.
pub const RAW: &str = "\u{1}RAW\u{1}";

fn raw_literal() -> impl Strategy<Value = String> {
    prop_oneof![
        "-?[0-9]{1,400}",
        "-?[0-9]{1,30}\\.[0-9]{1,60}([eE][+-]?[0-9]{1,5})?",
        Just("1e999".to_string()),
        Just("-1e999".to_string()),
        Just("-0".to_string()),
        Just("\"\\ud800\"".to_string()),
        Just("\"\\udc00\\ud800\"".to_string()),
        Just("\"\\u0000\"".to_string()),
        Just("\"a\\/b\\\\c\\\"\\b\\f\\n\\r\\t\"".to_string()),
        (100usize..1_200).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n))),
        (100usize..1_200).prop_map(|n| format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n))),
    ]
}

/// Strings that matter to some parser behind the decoder.
fn odd_string() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "\\PC{0,40}",
        1 => ".{0,20}",
        1 => Just(String::new()),
        1 => (1_000usize..70_000).prop_map(|n| "x".repeat(n)),
        // base64 edge cases (standard and URL-safe alphabets, padding, whitespace)
        2 => prop::sample::select(vec![
            "", "=", "==", "====", "YQ", "YQ=", "YQ==", "YQ===", "YWJj", "YWJ", "Y", "_-_-",
            "+/+/", "!!!", "YW Jj", "YWJj\n", "AAAA====AAAA", "\u{0}",
        ]).prop_map(str::to_string),
        1 => "[A-Za-z0-9+/_=-]{0,64}",
        // durations
        2 => prop::sample::select(vec![
            "0s", "1s", "-1s", "3.5s", "0.000000001s", "0.0000000001s", "1.s", ".5s", "s", "1",
            "1m", "1.5e3s", "315576000000s", "315576000001s", "-315576000001s",
            "9223372036854775807s", "99999999999999999999s", "NaNs", "1,5s", "+1s", " 1s",
        ]).prop_map(str::to_string),
        1 => "-?[0-9]{0,22}(\\.[0-9]{0,12})?s?",
        // timestamps
        2 => prop::sample::select(vec![
            "2030-01-01T00:00:00Z", "1970-01-01T00:00:00Z", "0001-01-01T00:00:00Z",
            "0000-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z", "10000-01-01T00:00:00Z",
            "2030-02-30T00:00:00Z", "2030-01-01T24:00:00Z", "2030-01-01T23:59:60Z",
            "2030-01-01T00:00:00+14:00", "2030-01-01T00:00:00-23:59", "2030-01-01T00:00:00",
            "2030-01-01T00:00:00.1234567890123Z", "2030-01-01 00:00:00Z", "-2030-01-01T00:00:00Z",
        ]).prop_map(str::to_string),
        1 => "[0-9]{1,5}-[0-9]{1,2}-[0-9]{1,2}T[0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}(\\.[0-9]{0,12})?(Z|[+-][0-9]{2}:[0-9]{2})?",
        // numbers and enums as strings
        2 => prop::sample::select(vec![
            "NaN", "Infinity", "-Infinity", "inf", "1e999", "-0", "0x10", "9223372036854775808",
            "-9223372036854775809", "4294967296", "2147483648", "-2147483649", "1.5", " 1",
            "POST", "FULL", "PAUSED", "HTTPS", "ALWAYS", "post", "full",
        ]).prop_map(str::to_string),
        // names and URLs (only ever 127.0.0.1 or unresolvable hosts)
        1 => prop::sample::select(vec![
            "projects/p/locations/l/queues/q", "projects/p/locations/l/queues/q/tasks/t",
            "http://127.0.0.1:9/x", "https://127.0.0.1:1/", "http://[::1]:9/", "ftp://x",
            "http://", "//x", "a,b,c", "name,rateLimits.maxBurstSize", "*",
        ]).prop_map(str::to_string),
    ]
}

fn weird_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        prop::sample::select(vec![
            0i64,
            -1,
            1,
            i64::from(i32::MAX),
            i64::from(i32::MAX) + 1,
            i64::from(i32::MIN),
            i64::from(i32::MIN) - 1,
            i64::MAX,
            i64::MIN,
            315_576_000_000,
        ])
        .prop_map(Value::from),
        prop::sample::select(vec![0.5f64, -0.0, 1e308, -1e308, 5e-324, 1.0000000001])
            .prop_map(Value::from),
    ]
}

/// Any JSON value, nested up to a few levels.
pub fn any_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        weird_number(),
        odd_string().prop_map(Value::String),
        Just(Value::String(RAW.to_string())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(("\\PC{0,10}", inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A value of the right type for `shape`, drawn from the edge cases of that type.
fn typed_leaf(shape: &Shape) -> BoxedStrategy<Value> {
    match shape {
        Str | Bytes | Duration | Timestamp | FieldMask => {
            odd_string().prop_map(Value::String).boxed()
        }
        Int32 | Int64 | Double => prop_oneof![
            3 => weird_number(),
            1 => odd_string().prop_map(Value::String),
        ]
        .boxed(),
        Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        Enum(names) => prop_oneof![
            3 => prop::sample::select(names.to_vec()).prop_map(Value::from),
            1 => (-3i64..12).prop_map(Value::from),
        ]
        .boxed(),
        Map(_) | List(_) | Msg(_) => unreachable!("not a leaf"),
    }
}

/// A JSON value shaped like `shape`: mostly the right field names and types, sometimes a wrong
/// type, an unknown field or garbage in its place.
pub fn shaped(shape: &Shape, depth: u32) -> BoxedStrategy<Value> {
    let right: BoxedStrategy<Value> = match shape {
        Msg(fields) if depth < 8 => {
            let picks: Vec<BoxedStrategy<Option<(String, Value)>>> = fields
                .iter()
                .map(|(name, s)| {
                    let name = (*name).to_string();
                    prop::option::weighted(0.4, shaped(s, depth + 1))
                        .prop_map(move |v| v.map(|v| (name.clone(), v)))
                        .boxed()
                })
                .collect();
            let unknown = prop::option::weighted(
                0.05,
                (
                    prop_oneof!["[a-z][a-zA-Z_]{0,12}", Just("@type".to_string())],
                    any_value(),
                ),
            );
            (picks, unknown)
                .prop_map(|(picks, unknown)| {
                    let mut m: Map<String, Value> = picks.into_iter().flatten().collect();
                    if let Some((k, v)) = unknown {
                        m.insert(k, v);
                    }
                    Value::Object(m)
                })
                .boxed()
        }
        Msg(_) => Just(Value::Object(Map::new())).boxed(),
        List(inner) => prop::collection::vec(shaped(inner, depth + 1), 0..4)
            .prop_map(Value::Array)
            .boxed(),
        Map(inner) => prop::collection::vec(
            (
                prop_oneof!["[A-Za-z-]{1,12}", "\\PC{0,12}"],
                shaped(inner, depth + 1),
            ),
            0..4,
        )
        .prop_map(|kv| Value::Object(kv.into_iter().collect()))
        .boxed(),
        leaf => typed_leaf(leaf),
    };
    prop_oneof![
        12 => right,
        1 => any_value(),
        1 => Just(Value::Null),
    ]
    .boxed()
}

/// Serialises `v`, replacing each [`RAW`] placeholder with raw JSON text from `raws`.
pub fn render(v: &Value, raws: &[String]) -> Vec<u8> {
    let text = serde_json::to_string(v).unwrap();
    let placeholder = serde_json::to_string(RAW).unwrap();
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    let mut i = 0;
    while let Some(at) = rest.find(&placeholder) {
        out.push_str(&rest[..at]);
        out.push_str(
            raws.get(i % raws.len().max(1))
                .map_or("null", String::as_str),
        );
        i += 1;
        rest = &rest[at + placeholder.len()..];
    }
    out.push_str(rest);
    out.into_bytes()
}

/// Raw replacements for [`RAW`] placeholders.
pub fn raws() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(raw_literal(), 1..4)
}

/// A byte-level edit of a body: truncation, an inserted or replaced byte, a duplicated span.
pub fn mutate(mut b: Vec<u8>, op: u8, pos: prop::sample::Index, byte: u8) -> Vec<u8> {
    if b.is_empty() {
        return vec![byte];
    }
    let i = pos.index(b.len());
    match op % 4 {
        0 => b.truncate(i),
        1 => b.insert(i, byte),
        2 => b[i] = byte,
        _ => {
            let span: Vec<u8> = b[i..].iter().take(16).copied().collect();
            b.splice(i..i, span);
        }
    }
    b
}
