//! The PostgreSQL implementation of the Stratus [`Store`](stratus_store::Store), and cluster
//! mode (several nodes on one database).
//!
//! (Crate documentation: parts, schema and indexes — to be written with the store.)

pub mod cluster;
pub mod notify;
