//! Shared helpers of the integration tests (`mod support;`).
pub mod upstream;
