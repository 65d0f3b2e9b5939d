//! The store conformance suite: one set of behavioural checks every [`crate::Store`] must pass.
