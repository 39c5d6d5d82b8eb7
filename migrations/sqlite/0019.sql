
    CREATE TABLE usage_endpoint_rollups (
        account_id            TEXT NOT NULL,
        granularity           TEXT NOT NULL CHECK (granularity IN ('hour','day')),
        bucket_ms             INTEGER NOT NULL,
        endpoint              TEXT NOT NULL,
        requests              INTEGER NOT NULL,
        input_tokens          INTEGER NOT NULL,
        cached_input_tokens   INTEGER NOT NULL,
        cache_write_5m_tokens INTEGER NOT NULL,
        cache_write_1h_tokens INTEGER NOT NULL,
        output_tokens         INTEGER NOT NULL,
        reasoning_tokens      INTEGER NOT NULL,
        cost_nanos            INTEGER NOT NULL,
        estimated_requests    INTEGER NOT NULL,
        error_requests        INTEGER NOT NULL,
        PRIMARY KEY (account_id, granularity, bucket_ms, endpoint)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX usage_endpoint_rollups_bucket ON usage_endpoint_rollups(granularity, bucket_ms);
    INSERT INTO usage_endpoint_rollups
        SELECT account_id, g.name, (started_ms / g.ms) * g.ms, endpoint,
               COUNT(*), SUM(input_tokens), SUM(cached_input_tokens), SUM(cache_write_5m_tokens),
               SUM(cache_write_1h_tokens), SUM(output_tokens), SUM(reasoning_tokens), SUM(cost_nanos),
               SUM(estimated), SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END)
        FROM usage_records,
             (SELECT 'hour' AS name, 3600000 AS ms UNION ALL SELECT 'day', 86400000) g
        GROUP BY 1, 2, 3, 4;
