//! The google.rpc status codes Stratus answers with, mapped once to HTTP and gRPC.

use std::fmt;

use stratus_proto::prost::Message as _;

/// A canonical google.rpc code (the subset Stratus uses, plus the rest for completeness).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// Not an error.
    Ok = 0,
    /// The caller cancelled.
    Cancelled = 1,
    /// Unknown error.
    Unknown = 2,
    /// The request is invalid regardless of the system state.
    InvalidArgument = 3,
    /// A deadline expired.
    DeadlineExceeded = 4,
    /// The resource does not exist.
    NotFound = 5,
    /// The resource already exists.
    AlreadyExists = 6,
    /// The caller lacks permission.
    PermissionDenied = 7,
    /// A quota or limit was hit.
    ResourceExhausted = 8,
    /// The system is not in a state that allows the call.
    FailedPrecondition = 9,
    /// A concurrency conflict.
    Aborted = 10,
    /// Out of range.
    OutOfRange = 11,
    /// Not implemented.
    Unimplemented = 12,
    /// An internal invariant broke.
    Internal = 13,
    /// Transient: try again.
    Unavailable = 14,
    /// Unrecoverable data loss.
    DataLoss = 15,
    /// No valid credentials.
    Unauthenticated = 16,
}

impl Code {
    /// The canonical upper-case name used in REST error bodies (`"NOT_FOUND"`).
    pub fn name(self) -> &'static str {
        match self {
            Code::Ok => "OK",
            Code::Cancelled => "CANCELLED",
            Code::Unknown => "UNKNOWN",
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::Aborted => "ABORTED",
            Code::OutOfRange => "OUT_OF_RANGE",
            Code::Unimplemented => "UNIMPLEMENTED",
            Code::Internal => "INTERNAL",
            Code::Unavailable => "UNAVAILABLE",
            Code::DataLoss => "DATA_LOSS",
            Code::Unauthenticated => "UNAUTHENTICATED",
        }
    }

    /// The HTTP status of the canonical mapping (google.rpc.Code docs).
    pub fn http_status(self) -> u16 {
        match self {
            Code::Ok => 200,
            Code::Cancelled => 499,
            Code::Unknown | Code::Internal | Code::DataLoss => 500,
            Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => 400,
            Code::DeadlineExceeded => 504,
            Code::NotFound => 404,
            Code::AlreadyExists | Code::Aborted => 409,
            Code::PermissionDenied => 403,
            Code::Unauthenticated => 401,
            Code::ResourceExhausted => 429,
            Code::Unimplemented => 501,
            Code::Unavailable => 503,
        }
    }

    /// The numeric gRPC code.
    pub fn grpc(self) -> i32 {
        self as i32
    }

    /// The code for a numeric value; unknown numbers map to [`Code::Unknown`].
    pub fn from_i32(v: i32) -> Code {
        use Code::*;
        [
            Ok,
            Cancelled,
            Unknown,
            InvalidArgument,
            DeadlineExceeded,
            NotFound,
            AlreadyExists,
            PermissionDenied,
            ResourceExhausted,
            FailedPrecondition,
            Aborted,
            OutOfRange,
            Unimplemented,
            Internal,
            Unavailable,
            DataLoss,
            Unauthenticated,
        ]
        .get(usize::try_from(v).unwrap_or(usize::MAX))
        .copied()
        .unwrap_or(Unknown)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A `google.rpc.Help` link attached to an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelpLink {
    /// What the link describes.
    pub description: String,
    /// Where it points.
    pub url: String,
}

/// An API error: a code, a message and optional Help links. Every failure that reaches a
/// client is one of these; both transports render it (REST JSON body, gRPC status).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Status {
    /// The canonical code.
    pub code: Code,
    /// The human message (the real service's text where it is known).
    pub message: String,
    /// `google.rpc.Help` links, rendered as a details entry.
    pub help: Vec<HelpLink>,
}

impl Status {
    /// A status with a code and message.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Status {
            code,
            message: message.into(),
            help: Vec::new(),
        }
    }

    /// Adds a `google.rpc.Help` link.
    pub fn with_help(mut self, description: &str, url: &str) -> Self {
        self.help.push(HelpLink {
            description: description.into(),
            url: url.into(),
        });
        self
    }

    /// INVALID_ARGUMENT with a message.
    pub fn invalid(message: impl Into<String>) -> Self {
        Status::new(Code::InvalidArgument, message)
    }

    /// NOT_FOUND with a message.
    pub fn not_found(message: impl Into<String>) -> Self {
        Status::new(Code::NotFound, message)
    }

    /// INTERNAL with a message.
    pub fn internal(message: impl Into<String>) -> Self {
        Status::new(Code::Internal, message)
    }

    /// UNAVAILABLE with a message.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Status::new(Code::Unavailable, message)
    }

    /// The `google.rpc.Status` proto of this error (details as `Any` with binary `Help`).
    pub fn to_proto(&self) -> stratus_proto::google::rpc::Status {
        use stratus_proto::google::rpc;
        let details = if self.help.is_empty() {
            Vec::new()
        } else {
            let help = rpc::Help {
                links: self
                    .help
                    .iter()
                    .map(|l| rpc::help::Link {
                        description: l.description.clone(),
                        url: l.url.clone(),
                    })
                    .collect(),
            };
            vec![stratus_proto::wkt::Any {
                type_url: "type.googleapis.com/google.rpc.Help".into(),
                value: help.encode_to_vec().into(),
            }]
        };
        rpc::Status {
            code: self.code.grpc(),
            message: self.message.clone(),
            details,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_matches_google_table() {
        assert_eq!(Code::FailedPrecondition.http_status(), 400);
        assert_eq!(Code::AlreadyExists.http_status(), 409);
        assert_eq!(Code::Unavailable.http_status(), 503);
        assert_eq!(Code::from_i32(5), Code::NotFound);
        assert_eq!(Code::from_i32(99), Code::Unknown);
        assert_eq!(Code::Unauthenticated.name(), "UNAUTHENTICATED");
    }
}
