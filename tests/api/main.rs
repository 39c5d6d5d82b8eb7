#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken expectations
#![allow(clippy::disallowed_methods)] // a test's tasks end with its runtime

//! InstaGen's integration tests: the real server on port 0, a real mock upstream over
//! TCP, a real SQLite file (or a PostgreSQL database: see `helpers.rs`). One binary;
//! modules are named by capability.

mod browser;
mod helpers;
mod receivers;
mod services;

mod abuse;
mod agent_sdks;
mod alerts;
mod answer_cost;
mod anthropic;
mod billing;
mod chat_completions;
mod cli;
mod coding_agents;
mod console;
mod data_rights;
mod durability;
mod errors;
mod faults;
mod keys;
mod limits;
mod local_engine;
mod manage;
mod memberships;
mod messages_api;
mod metrics;
mod models;
mod node_sdk;
mod postgres;
mod privacy;
mod privacy_policy;
mod providers;
mod python_sdk;
mod quarantine;
mod responses_api;
mod routing;
mod scale;
mod scale_out;
mod session;
mod standing;
mod streaming;
mod tenant_isolation;
mod tls;
mod token_kinds;
mod uploads;
mod upstream_connections;
mod usage;
