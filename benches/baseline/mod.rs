//! The fast baseline the benchmark measures tapedeck against: a minimal hyper upstream
//! and a minimal keep-alive load generator, each on a thread of its own.

pub mod loadgen;
pub mod upstream;
