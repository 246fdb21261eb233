//! aftercare: after-sales messages from YAML campaign definitions.
//!
//! See ARCHITECTURE.md for the flow and the map of these modules.
//!
//! Only the modules the integration tests reach into are `pub`; the rest are private, and
//! `unreachable_pub` keeps their items `pub(crate)`, so the compiler sees (and `clippy -D
//! warnings` refuses) code nothing uses. Inside the public modules, items only the crate
//! uses are `pub(crate)` for the same reason.

#![warn(unreachable_pub)]

mod answers;
pub mod api;
pub mod channels;
mod check;
pub mod cli;
mod clock;
pub mod config;
pub mod console;
pub mod cron_tz;
mod daemon;
pub mod diag;
mod dispatch;
pub mod duration;
pub mod feedback;
pub mod housekeeping;
pub mod ingest;
pub mod jobs;
mod logging;
mod metrics;
pub mod model;
pub mod plan;
pub mod playbook;
pub mod policy;
mod reports;
pub mod schedule;
mod send_guard;
pub mod sms_hooks;
pub mod store;
pub mod templates;
mod text;
pub mod unsubscribe;
pub mod values;
pub mod yaml;
