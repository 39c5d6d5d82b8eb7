//! `mock-upstream` binary: a fake OpenAI-compatible engine for load benches and manual runs.
//!
//! Usage: `mock-upstream [--listen 127.0.0.1:8000] [--words N] [--chunk-delay-ms MS]`, or
//! `mock-upstream --listen ADDR --proxy-to UPSTREAM` for the load bench's floor: a bare
//! reverse proxy (see `floor.rs`).
#![allow(clippy::disallowed_methods)] // a test fixture, not the product: its tasks and exits need no tracking

use std::time::Duration;

use mock_upstream::{Script, serve_forever};

fn main() -> std::io::Result<()> {
    let mut listen = "127.0.0.1:8000".to_owned();
    let mut script = Script::default();
    let mut proxy_to: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().unwrap_or_default();
        match arg.as_str() {
            "--listen" => listen = value,
            "--proxy-to" => proxy_to = Some(value),
            "--words" => {
                let n: usize = value.parse().map_err(std::io::Error::other)?;
                script.reply = (0..n)
                    .map(|i| {
                        if i == 0 {
                            "tok".to_owned()
                        } else {
                            " tok".to_owned()
                        }
                    })
                    .collect();
            }
            "--chunk-delay-ms" => {
                script.chunk_delay =
                    Duration::from_millis(value.parse().map_err(std::io::Error::other)?);
            }
            other => {
                eprintln!(
                    "unknown argument {other}; usage: mock-upstream [--listen ADDR] [--words N] [--chunk-delay-ms MS] [--proxy-to ADDR]"
                );
                std::process::exit(64);
            }
        }
    }
    let addr = listen.parse().map_err(std::io::Error::other)?;
    let threads = std::env::var("MOCK_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    match proxy_to {
        Some(upstream) => {
            let upstream = upstream.parse().map_err(std::io::Error::other)?;
            runtime.block_on(mock_upstream::floor::proxy_forever(addr, upstream))
        }
        None => runtime.block_on(serve_forever(addr, script)),
    }
}
