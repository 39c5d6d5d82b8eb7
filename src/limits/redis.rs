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
// Budgets shared by every instance: a hash per account (and one per limited key, in the
// account's slot) whose field per instance holds what it has in flight, settled but not
// yet everywhere in the store's figures; `<instance>:t` says when it last spoke. Fields
// of an instance silent for ARGV[3] ms are dropped (it died with its reservations).
// KEYS[1] account hash, KEYS[2] key hash; ARGV: instance, estimate, stale ms, check the
// account (0/1), its balance in the store, check the key (0/1), its limit, its stored spend.
// Returns 0 (reserved), 1 (balance exhausted) or 2 (key limit reached).
const BUDGET_RESERVE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local stale = tonumber(ARGV[3])
local function pending(k)
  local h = redis.call('HGETALL', k)
  local seen, amounts, sum, dead = {}, {}, 0, {}
  for i = 1, #h, 2 do
    local f = h[i]
    if string.sub(f, -2) == ':t' then seen[string.sub(f, 1, -3)] = tonumber(h[i + 1])
    else amounts[f] = tonumber(h[i + 1]) end
  end
  for f, v in pairs(amounts) do
    if now - (seen[f] or 0) > stale then dead[#dead + 1] = f; dead[#dead + 1] = f .. ':t'
    else sum = sum + v end
  end
  if #dead > 0 then redis.call('HDEL', k, unpack(dead)) end
  return sum
end
local est = tonumber(ARGV[2])
if ARGV[4] == '1' then
  local avail = tonumber(ARGV[5]) - pending(KEYS[1])
  if avail <= 0 or avail < est then return 1 end
end
if ARGV[6] == '1' then
  local spent = tonumber(ARGV[8]) + pending(KEYS[2])
  if spent >= tonumber(ARGV[7]) or spent + est > tonumber(ARGV[7]) then return 2 end
end
if ARGV[4] == '1' then
  redis.call('HINCRBY', KEYS[1], ARGV[1], est)
  redis.call('HSET', KEYS[1], ARGV[1] .. ':t', now)
end
if ARGV[6] == '1' then
  redis.call('HINCRBY', KEYS[2], ARGV[1], est)
  redis.call('HSET', KEYS[2], ARGV[1] .. ':t', now)
end
return 0
";

// Moves this instance's field of one budget hash by ARGV[2]; a field back at zero (or
// below: it was dropped as stale meanwhile, and the heartbeat rewrites it) goes.
const BUDGET_ADJUST: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local v = redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
if v <= 0 then redis.call('HDEL', KEYS[1], ARGV[1], ARGV[1] .. ':t')
else redis.call('HSET', KEYS[1], ARGV[1] .. ':t', now) end
return v
";

// Writes this instance's field of one budget hash outright (the heartbeat; 0 removes it).
const BUDGET_SET: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if tonumber(ARGV[2]) <= 0 then redis.call('HDEL', KEYS[1], ARGV[1], ARGV[1] .. ':t'); return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2], ARGV[1] .. ':t', now)
return 1
";

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
    budget_reserve: Script,
    budget_adjust: Script,
    budget_set: Script,
}

/// One budget check made in Redis: the figures this instance read from the store.
pub struct BudgetCheck<'a> {
    pub account: &'a str,
    pub key: &'a str,
    pub instance: &'a str,
    pub estimate: i64,
    /// The account's balance, when it is checked (prepaid billing).
    pub balance: Option<i64>,
    /// The key's limit and its stored spend in the period, when it has a limit.
    pub key_limit: Option<(i64, i64)>,
}

/// How long an instance may stay silent before its budget fields are dropped.
pub const BUDGET_STALE_MS: i64 = 30_000;

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
            budget_reserve: Script::new(BUDGET_RESERVE),
            budget_adjust: Script::new(BUDGET_ADJUST),
            budget_set: Script::new(BUDGET_SET),
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

    /// The hash of an account's budget (`key`: of one of its keys), in the account's slot.
    pub fn budget_hash(&self, account: &str, key: Option<&str>) -> String {
        match key {
            None => format!("{}{{budget:{account}}}", self.prefix),
            Some(k) => format!("{}{{budget:{account}}}:key:{k}", self.prefix),
        }
    }

    /// Reserves `estimate` against what every instance has pending: 0 reserved, 1 the
    /// balance cannot cover it, 2 the key's limit is reached.
    pub async fn budget_reserve(&self, c: &BudgetCheck<'_>) -> Result<i64, RedisError> {
        let mut call = self.budget_reserve.key(self.budget_hash(c.account, None));
        call.key(self.budget_hash(c.account, Some(c.key)));
        let (limit, spent) = c.key_limit.unwrap_or((0, 0));
        call.arg(c.instance)
            .arg(c.estimate)
            .arg(BUDGET_STALE_MS)
            .arg(u8::from(c.balance.is_some()))
            .arg(c.balance.unwrap_or(0))
            .arg(u8::from(c.key_limit.is_some()))
            .arg(limit)
            .arg(spent);
        self.invoke(&call).await
    }

    /// Moves this instance's pending amount in one budget hash (0: a heartbeat).
    pub async fn budget_adjust(
        &self,
        hash: &str,
        instance: &str,
        delta: i64,
    ) -> Result<i64, RedisError> {
        let mut call = self.budget_adjust.key(hash);
        call.arg(instance).arg(delta);
        self.invoke(&call).await
    }

    /// Writes this instance's pending amount in one budget hash outright.
    pub async fn budget_set(
        &self,
        hash: &str,
        instance: &str,
        value: i64,
    ) -> Result<i64, RedisError> {
        let mut call = self.budget_set.key(hash);
        call.arg(instance).arg(value);
        self.invoke(&call).await
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
