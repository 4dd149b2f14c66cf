//! The docklab server library: HTTP API, terminal WebSocket, metrics, pages.
//!
//! `main.rs` turns the command line ([`cli`]) into a [`config::ServerConfig`] and an
//! [`app::AppState`], then calls [`app::serve`]. Everything below is driven by tests in-process.

pub mod app;
pub mod classroom;
pub mod cli;
pub mod config;
pub mod drills;
pub mod error;
pub mod extract;
pub mod grading;
pub mod lifecycle;
pub mod log_lines;
pub mod metrics;
pub mod origin;
pub mod pages;
pub mod ports;
pub mod ratelimit;
pub mod registry;
pub mod security_headers;
pub mod sessions;
pub mod store;
pub mod terminal;
pub mod token;
pub mod warm;
pub mod visuals;

#[cfg(test)]
mod testing;
