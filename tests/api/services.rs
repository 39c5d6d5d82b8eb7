//! Local services some tests need (PostgreSQL, Redis): reachability checks, per-test
//! namespaces, and skips that are reported, never silently green.
//!
//! A skipped test appends `test: reason` to `target/tmp/skipped.txt`; `.ci/run` counts
//! those lines as skipped (not passed) in its summary and prints them.

use std::io::Write;
use std::time::Duration;

/// Records that `test` did not run, and why.
pub fn skip(test: &str, reason: &str) {
    let line = format!("{test}: {reason}");
    println!("SKIPPED {line}");
    eprintln!("SKIPPED {line}");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(concat!(env!("CARGO_TARGET_TMPDIR"), "/skipped.txt"))
    {
        // One write of the whole line: appends from concurrent tests never interleave.
        let _ = f.write_all(format!("{line}\n").as_bytes());
    }
}

pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// Whether Redis answers PING at [`REDIS_URL`] (within a second).
pub async fn redis_up() -> bool {
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect("127.0.0.1:6379")
            .await
            .ok()?;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream.write_all(b"PING\r\n").await.ok()?;
        let mut buf = [0u8; 7];
        stream.read_exact(&mut buf).await.ok()?;
        (&buf == b"+PONG\r\n").then_some(())
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), probe).await,
        Ok(Some(()))
    )
}

/// A Redis key prefix no other test uses.
pub fn redis_prefix() -> String {
    format!("instagen-test-{}:", instagen::keys::random_id(12).unwrap())
}

/// The PostgreSQL server of `tests/api/postgres.rs` (trust auth, user `postgres`).
pub const POSTGRES_SERVER: &str = "postgres://postgres@127.0.0.1:5432";

/// Whether PostgreSQL at [`POSTGRES_SERVER`] accepts a connection (within two seconds);
/// the error says why not.
pub async fn postgres_up() -> Result<(), String> {
    use sqlx::Connection;
    let connect = sqlx::PgConnection::connect(&format!("{POSTGRES_SERVER}/postgres"));
    match tokio::time::timeout(Duration::from_secs(2), connect).await {
        Ok(Ok(c)) => {
            let _ = c.close().await;
            Ok(())
        }
        Ok(Err(e)) => Err(format!("PostgreSQL at 127.0.0.1:5432 refused: {e}")),
        Err(_) => Err("PostgreSQL at 127.0.0.1:5432 did not answer within 2 s".to_owned()),
    }
}
