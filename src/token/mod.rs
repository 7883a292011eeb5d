//! The mandate/v1 token schema, shared by the service and by offline verifiers.
//!
//! This module builds without the `server` feature, so downstream services can depend on it
//! alone.

pub mod keys;
