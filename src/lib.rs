//! aftercare: after-sales messages from YAML campaign definitions.
//!
//! See ARCHITECTURE.md for the flow and the map of these modules.

pub mod answers;
pub mod api;
pub mod channels;
pub mod check;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod diag;
pub mod dispatch;
pub mod duration;
pub mod ingest;
pub mod jobs;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod plan;
pub mod playbook;
pub mod policy;
pub mod reports;
pub mod schedule;
pub mod sms_hooks;
pub mod store;
pub mod templates;
pub mod unsubscribe;
pub mod values;
pub mod yaml;
