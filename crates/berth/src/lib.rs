//! The `berth` binary's library half: the command line ([`cli`]) and the configuration
//! ([`config`]). `main.rs` only wires them to the store and `berth_server::serve`.
//!
//! This is the one crate where `anyhow` is fine (in `main.rs`); configuration errors are typed
//! ([`config::ConfigError`]) so tests can assert on them.

pub mod admin;
pub mod cli;
pub mod config;
pub mod ctl;
pub mod edge;
pub mod node;
pub mod passwd;
