//! escalation-bot: runs Safeguarding Adults Boards' professional-disagreement procedures by email.
//!
//! The crate is a functional core ([`core`]) inside an imperative shell ([`config`], [`store`], [`mail`],
//! [`scheduler`], [`cli`], [`app`]). See ARCHITECTURE.md for the map.

pub mod app;
pub mod cli;
pub mod config;
pub mod core;
pub mod http;
pub mod mail;
pub mod monitor;
pub mod retention;
pub mod scheduler;
pub mod simulate;
pub mod store;
