
    CREATE TABLE usage_endpoint_rollups (
        account_id            TEXT NOT NULL,
        granularity           TEXT NOT NULL CHECK (granularity IN ('hour','day')),
        bucket_ms             BIGINT NOT NULL,
        endpoint              TEXT NOT NULL,
        requests              BIGINT NOT NULL,
        input_tokens          BIGINT NOT NULL,
        cached_input_tokens   BIGINT NOT NULL,
        cache_write_5m_tokens BIGINT NOT NULL,
        cache_write_1h_tokens BIGINT NOT NULL,
        output_tokens         BIGINT NOT NULL,
        reasoning_tokens      BIGINT NOT NULL,
        cost_nanos            BIGINT NOT NULL,
        estimated_requests    BIGINT NOT NULL,
        error_requests        BIGINT NOT NULL,
        PRIMARY KEY (account_id, granularity, bucket_ms, endpoint)
    );
    CREATE INDEX usage_endpoint_rollups_bucket ON usage_endpoint_rollups(granularity, bucket_ms);
    INSERT INTO usage_endpoint_rollups
        SELECT u.account_id, g.name, (u.started_ms / g.ms) * g.ms, u.endpoint,
               COUNT(*), SUM(u.input_tokens), SUM(u.cached_input_tokens), SUM(u.cache_write_5m_tokens),
               SUM(u.cache_write_1h_tokens), SUM(u.output_tokens), SUM(u.reasoning_tokens), SUM(u.cost_nanos),
               SUM(CASE WHEN u.estimated THEN 1 ELSE 0 END), SUM(CASE WHEN u.status >= 400 THEN 1 ELSE 0 END)
        FROM usage_records u
             CROSS JOIN (VALUES ('hour', 3600000::BIGINT), ('day', 86400000::BIGINT)) AS g(name, ms)
        GROUP BY 1, 2, 3, 4;
    CREATE FUNCTION usage_endpoint_rollups_insert() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO usage_endpoint_rollups AS r (account_id, granularity, bucket_ms, endpoint, requests,
                                                 input_tokens, cached_input_tokens, cache_write_5m_tokens,
                                                 cache_write_1h_tokens, output_tokens, reasoning_tokens,
                                                 cost_nanos, estimated_requests, error_requests)
            SELECT n.account_id, g.name, (n.started_ms / g.ms) * g.ms, n.endpoint,
                   COUNT(*), SUM(n.input_tokens), SUM(n.cached_input_tokens), SUM(n.cache_write_5m_tokens),
                   SUM(n.cache_write_1h_tokens), SUM(n.output_tokens), SUM(n.reasoning_tokens), SUM(n.cost_nanos),
                   SUM(CASE WHEN n.estimated THEN 1 ELSE 0 END), SUM(CASE WHEN n.status >= 400 THEN 1 ELSE 0 END)
            FROM new_rows n
                 CROSS JOIN (VALUES ('hour', 3600000::BIGINT), ('day', 86400000::BIGINT)) AS g(name, ms)
            GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
        ON CONFLICT (account_id, granularity, bucket_ms, endpoint) DO UPDATE SET
            requests = r.requests + excluded.requests,
            input_tokens = r.input_tokens + excluded.input_tokens,
            cached_input_tokens = r.cached_input_tokens + excluded.cached_input_tokens,
            cache_write_5m_tokens = r.cache_write_5m_tokens + excluded.cache_write_5m_tokens,
            cache_write_1h_tokens = r.cache_write_1h_tokens + excluded.cache_write_1h_tokens,
            output_tokens = r.output_tokens + excluded.output_tokens,
            reasoning_tokens = r.reasoning_tokens + excluded.reasoning_tokens,
            cost_nanos = r.cost_nanos + excluded.cost_nanos,
            estimated_requests = r.estimated_requests + excluded.estimated_requests,
            error_requests = r.error_requests + excluded.error_requests;
        RETURN NULL;
    END
    $$;
    -- Named to fire after usage_rollups_insert and before usage_unposted_insert (statement
    -- triggers fire in name order): the order account erasure takes these tables in.
    CREATE TRIGGER usage_rollups_insert_by_endpoint AFTER INSERT ON usage_records
        REFERENCING NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION usage_endpoint_rollups_insert();
