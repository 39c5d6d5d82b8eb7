
    ALTER TABLE usage_records ADD COLUMN cache_write_5m_tokens BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE usage_records ADD COLUMN cache_write_1h_tokens BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE usage_records ADD COLUMN reasoning_tokens BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE usage_rollups ADD COLUMN cache_write_5m_tokens BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE usage_rollups ADD COLUMN cache_write_1h_tokens BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE usage_rollups ADD COLUMN reasoning_tokens BIGINT NOT NULL DEFAULT 0;
    CREATE OR REPLACE FUNCTION usage_rollups_insert() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO usage_rollups AS r (account_id, granularity, bucket_ms, key_id, model, requests, input_tokens,
                                        cached_input_tokens, output_tokens, cost_nanos, estimated_requests, error_requests,
                                        cache_write_5m_tokens, cache_write_1h_tokens, reasoning_tokens)
            SELECT n.account_id, g.name, (n.started_ms / g.ms) * g.ms, n.key_id, COALESCE(n.model, ''),
                   COUNT(*), SUM(n.input_tokens), SUM(n.cached_input_tokens), SUM(n.output_tokens), SUM(n.cost_nanos),
                   SUM(CASE WHEN n.estimated THEN 1 ELSE 0 END), SUM(CASE WHEN n.status >= 400 THEN 1 ELSE 0 END),
                   SUM(n.cache_write_5m_tokens), SUM(n.cache_write_1h_tokens), SUM(n.reasoning_tokens)
            FROM new_rows n
                 CROSS JOIN (VALUES ('minute', 60000::BIGINT), ('hour', 3600000::BIGINT), ('day', 86400000::BIGINT)) AS g(name, ms)
            GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
        ON CONFLICT (account_id, granularity, bucket_ms, key_id, model) DO UPDATE SET
            requests = r.requests + excluded.requests,
            input_tokens = r.input_tokens + excluded.input_tokens,
            cached_input_tokens = r.cached_input_tokens + excluded.cached_input_tokens,
            output_tokens = r.output_tokens + excluded.output_tokens,
            cost_nanos = r.cost_nanos + excluded.cost_nanos,
            estimated_requests = r.estimated_requests + excluded.estimated_requests,
            error_requests = r.error_requests + excluded.error_requests,
            cache_write_5m_tokens = r.cache_write_5m_tokens + excluded.cache_write_5m_tokens,
            cache_write_1h_tokens = r.cache_write_1h_tokens + excluded.cache_write_1h_tokens,
            reasoning_tokens = r.reasoning_tokens + excluded.reasoning_tokens;
        RETURN NULL;
    END
    $$;
    
