//! Shared helpers of the integration tests (`mod support;`).
pub mod harness;
pub mod upstream;
