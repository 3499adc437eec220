//! Traces: turning a recorded session into OpenTelemetry GenAI spans.
//!
//! The first layer is [`adapters`], which reads one recorded exchange and, when it is
//! LLM traffic, extracts a provider-neutral [`adapters::LlmCall`] (model, usage, finish
//! reasons, tool calls and results, normalised messages). The span tree is built on top
//! of those calls, so nothing above this layer needs to know any provider's wire format.
//! [`causal`] reads which events carry content of which earlier ones: the tree hangs tool
//! exchanges by it, and replay orders its answers by it.

#![forbid(unsafe_code)]

pub mod adapters;
pub mod analyze;
pub mod case;
pub mod causal;
pub mod diff;
pub mod live;
pub mod otlp;
pub mod pb;
pub mod spans;
pub mod tool_calls;
pub mod tool_names;
