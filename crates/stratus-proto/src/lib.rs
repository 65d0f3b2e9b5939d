//! Google Cloud Tasks v2 protobuf types, generated with prost from the vendored protos
//! (`/proto`, Apache-2.0) and given proto3 JSON serde impls by pbjson.
//!
//! One set of types serves REST (JSON via serde) and gRPC (binary via prost). The vendored
//! protos carry the newest client surface: `Queue.http_target`, `Task.retry_config`, the batch
//! RPCs and CMEK.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// `google.*` packages.
pub mod google {
    /// `google.api`.
    pub mod api {
        include!(concat!(env!("OUT_DIR"), "/google.api.rs"));
        include!(concat!(env!("OUT_DIR"), "/google.api.serde.rs"));
    }
    /// `google.rpc`.
    pub mod rpc {
        include!(concat!(env!("OUT_DIR"), "/google.rpc.rs"));
        include!(concat!(env!("OUT_DIR"), "/google.rpc.serde.rs"));
    }
    /// `google.type`.
    pub mod r#type {
        include!(concat!(env!("OUT_DIR"), "/google.r#type.rs"));
        include!(concat!(env!("OUT_DIR"), "/google.r#type.serde.rs"));
    }
    /// `google.iam`.
    pub mod iam {
        /// `google.iam.v1`.
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/google.iam.v1.rs"));
            include!(concat!(env!("OUT_DIR"), "/google.iam.v1.serde.rs"));
        }
    }
    /// `google.longrunning`.
    pub mod longrunning {
        include!(concat!(env!("OUT_DIR"), "/google.longrunning.rs"));
        include!(concat!(env!("OUT_DIR"), "/google.longrunning.serde.rs"));
    }
    /// `google.cloud`.
    pub mod cloud {
        /// `google.cloud.location`.
        pub mod location {
            include!(concat!(env!("OUT_DIR"), "/google.cloud.location.rs"));
            include!(concat!(env!("OUT_DIR"), "/google.cloud.location.serde.rs"));
        }
        /// `google.cloud.tasks`.
        pub mod tasks {
            /// `google.cloud.tasks.v2`.
            pub mod v2 {
                include!(concat!(env!("OUT_DIR"), "/google.cloud.tasks.v2.rs"));
                include!(concat!(env!("OUT_DIR"), "/google.cloud.tasks.v2.serde.rs"));
            }
        }
    }
}

pub use google::cloud::tasks::v2 as tasks;
pub use pbjson_types as wkt;
pub use prost;
