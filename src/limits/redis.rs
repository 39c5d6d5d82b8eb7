//! The shared limit store in Redis (or Redis Cluster): Lua scripts that check and add
//! atomically, with each subject's keys under one hash tag (`{k:id:rpm}`) so a cluster
//! keeps them in one slot. Time comes from Redis itself, so instances agree on it.
//!
//! Every call is bounded by a short timeout; a failure is reported as a [`RedisError`]
//! that keeps its cause, and the limiter decides (fail open or closed) and logs why. A
//! connection lost at start is retried in the background.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::Script;
use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;

use super::window::Verdict;

const CALL_TIMEOUT: Duration = Duration::from_millis(500);

/// Why a call to Redis failed.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("not connected to redis (still retrying in the background)")]
    NotConnected,
    #[error("redis did not answer within {}ms", CALL_TIMEOUT.as_millis())]
    Timeout,
    #[error("redis refused the call: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis answered in an unexpected shape")]
    Shape,
    #[error("no randomness for a lease id: {0}")]
    Random(std::io::Error),
}

/// Check-and-add on a one-minute window of one-second buckets (a hash: second → count).
const WINDOW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1])
local limit = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
local h = redis.call('HGETALL', KEYS[1])
local used, oldest, stale = 0, nil, {}
for i = 1, #h, 2 do
  local s, c = tonumber(h[i]), tonumber(h[i + 1])
  if s <= now - 60 then
    stale[#stale + 1] = h[i]
  else
    used = used + c
    if c > 0 and (oldest == nil or s < oldest) then oldest = s end
  end
end
if #stale > 0 then redis.call('HDEL', KEYS[1], unpack(stale)) end
if used < 0 then used = 0 end
local admitted = 0
if used + cost <= limit then
  admitted = 1
  if cost ~= 0 then
    redis.call('HINCRBY', KEYS[1], now, cost)
    redis.call('EXPIRE', KEYS[1], 61)
    if oldest == nil then oldest = now end
  end
end
local reset = 1
if oldest ~= nil then reset = oldest + 60 - now end
local remaining = limit - used
if admitted == 1 then remaining = remaining - cost end
if remaining < 0 then remaining = 0 end
return {admitted, remaining, reset, now}
";

/// Takes a concurrency lease (a sorted set of lease ids scored by expiry) if one is free.
const ACQUIRE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
";

/// Counts a failed authentication; at the limit, blocks the address for a while.
const AUTH_FAILED: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], 60) end
if n >= tonumber(ARGV[1]) then redis.call('SET', KEYS[2], 1, 'EX', ARGV[2]) end
return n
";

#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

pub struct RedisLimits {
    conn: Arc<RwLock<Option<Conn>>>,
    prefix: String,
    lease_ttl_ms: u64,
    window: Script,
    acquire: Script,
    auth_failed: Script,
}

async fn open(url: &str) -> Result<Conn, RedisError> {
    if let Some(rest) = url.strip_prefix("redis+cluster://") {
        let nodes: Vec<String> = rest.split(',').map(|n| format!("redis://{n}")).collect();
        let client = redis::cluster::ClusterClient::builder(nodes)
            .connection_timeout(CALL_TIMEOUT)
            .response_timeout(CALL_TIMEOUT)
            .build()?;
        let c = client.get_async_connection().await?;
        return Ok(Conn::Cluster(c));
    }
    let client = redis::Client::open(url)?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CALL_TIMEOUT))
        .set_response_timeout(Some(CALL_TIMEOUT))
        .set_number_of_retries(1);
    let c = tokio::time::timeout(
        CALL_TIMEOUT * 4,
        client.get_connection_manager_with_config(config),
    )
    .await
    .map_err(|_| RedisError::Timeout)??;
    Ok(Conn::Single(c))
}

impl RedisLimits {
    /// Connects now, or keeps trying in the background while the limiter falls back.
    pub async fn connect(url: &str, prefix: &str, lease_ttl_secs: u64) -> Self {
        let conn = Arc::new(RwLock::new(None));
        match open(url).await {
            Ok(c) => *conn.write().unwrap_or_else(|p| p.into_inner()) = Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "cannot reach redis at start; retrying in the background");
                let (slot, url) = (Arc::downgrade(&conn), url.to_owned());
                // Ends when it connects, or when the limiter that owns the slot is gone.
                #[allow(clippy::disallowed_methods)]
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        let Some(slot) = slot.upgrade() else { break };
                        if let Ok(c) = open(&url).await {
                            *slot.write().unwrap_or_else(|p| p.into_inner()) = Some(c);
                            tracing::info!("connected to redis");
                            break;
                        }
                    }
                });
            }
        }
        Self {
            conn,
            prefix: prefix.to_owned(),
            lease_ttl_ms: lease_ttl_secs.max(1) * 1000,
            window: Script::new(WINDOW),
            acquire: Script::new(ACQUIRE),
            auth_failed: Script::new(AUTH_FAILED),
        }
    }

    fn conn(&self) -> Result<Conn, RedisError> {
        self.conn
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(RedisError::NotConnected)
    }

    /// `prefix{subject}`: one hash tag per subject.
    fn key(&self, subject: &str) -> String {
        format!("{}{{{subject}}}", self.prefix)
    }

    async fn invoke<T: redis::FromRedisValue>(
        &self,
        call: &redis::ScriptInvocation<'_>,
    ) -> Result<T, RedisError> {
        let conn = self.conn()?;
        let run = async {
            match conn {
                Conn::Single(mut c) => call.invoke_async(&mut c).await,
                Conn::Cluster(mut c) => call.invoke_async(&mut c).await,
            }
        };
        match tokio::time::timeout(CALL_TIMEOUT, run).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(RedisError::Timeout),
        }
    }

    async fn command<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, RedisError> {
        let conn = self.conn()?;
        let run = async {
            match conn {
                Conn::Single(mut c) => cmd.query_async(&mut c).await,
                Conn::Cluster(mut c) => cmd.query_async(&mut c).await,
            }
        };
        match tokio::time::timeout(CALL_TIMEOUT, run).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(RedisError::Timeout),
        }
    }

    /// Check-and-add; returns the verdict and the (Redis) second it was added at.
    pub async fn window(
        &self,
        subject: &str,
        limit: u64,
        cost: u64,
    ) -> Result<(Verdict, i64), RedisError> {
        let mut call = self.window.key(self.key(subject));
        call.arg(limit).arg(cost);
        let r: Vec<i64> = self.invoke(&call).await?;
        let [admitted, remaining, reset, now] = r[..] else {
            return Err(RedisError::Shape);
        };
        Ok((
            Verdict {
                admitted: admitted == 1,
                remaining: u64::try_from(remaining).unwrap_or(0),
                reset_s: u64::try_from(reset).unwrap_or(1).max(1),
            },
            now,
        ))
    }

    pub async fn adjust(&self, subject: &str, at: i64, delta: i64) {
        let cmd = redis::cmd("HINCRBY")
            .arg(self.key(subject))
            .arg(at)
            .arg(delta)
            .clone();
        let _: Result<i64, RedisError> = self.command(&cmd).await;
    }

    /// A lease id when one of `max` is free, `None` when all are taken.
    pub async fn acquire(&self, subject: &str, max: u32) -> Result<Option<String>, RedisError> {
        let id = crate::keys::random_id(16).map_err(RedisError::Random)?;
        let mut call = self.acquire.key(self.key(subject));
        call.arg(max).arg(self.lease_ttl_ms).arg(&id);
        let got: i64 = self.invoke(&call).await?;
        Ok((got == 1).then_some(id))
    }

    pub async fn release(&self, subject: &str, id: &str) {
        let cmd = redis::cmd("ZREM").arg(self.key(subject)).arg(id).clone();
        let _: Result<i64, RedisError> = self.command(&cmd).await;
    }

    /// Seconds the address stays blocked, if it is.
    pub async fn blocked_for(&self, subject: &str) -> Result<Option<u64>, RedisError> {
        let cmd = redis::cmd("PTTL")
            .arg(format!("{}:block", self.key(subject)))
            .clone();
        let ms: i64 = self.command(&cmd).await?;
        Ok((ms > 0).then(|| u64::try_from(ms).unwrap_or(1000).div_ceil(1000)))
    }

    pub async fn auth_failed(
        &self,
        subject: &str,
        limit: u32,
        block_secs: u64,
    ) -> Result<(), RedisError> {
        let key = self.key(subject);
        let mut call = self.auth_failed.key(&key);
        call.key(format!("{key}:block"))
            .arg(limit)
            .arg(block_secs.max(1));
        let _: i64 = self.invoke(&call).await?;
        Ok(())
    }
}
