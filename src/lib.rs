//! aftercare: after-sales messages from YAML campaign definitions.
//!
//! See ARCHITECTURE.md for the flow and the map of these modules.

pub mod clock;
pub mod config;
pub mod diag;
pub mod duration;
pub mod ingest;
pub mod jobs;
pub mod model;
pub mod templates;
pub mod yaml;
pub mod store;
pub mod channels;
pub mod plan;
pub mod dispatch;
pub mod cli;
