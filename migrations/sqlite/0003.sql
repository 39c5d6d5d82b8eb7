
    CREATE TABLE usage_rollups (
        account_id          TEXT NOT NULL,
        granularity         TEXT NOT NULL CHECK (granularity IN ('minute','hour','day')),
        bucket_ms           INTEGER NOT NULL,
        key_id              TEXT NOT NULL,
        model               TEXT NOT NULL,
        requests            INTEGER NOT NULL,
        input_tokens        INTEGER NOT NULL,
        cached_input_tokens INTEGER NOT NULL,
        output_tokens       INTEGER NOT NULL,
        cost_nanos          INTEGER NOT NULL,
        estimated_requests  INTEGER NOT NULL,
        error_requests      INTEGER NOT NULL,
        PRIMARY KEY (account_id, granularity, bucket_ms, key_id, model)
    );
    CREATE INDEX usage_rollups_bucket ON usage_rollups(granularity, bucket_ms);
    CREATE INDEX usage_started ON usage_records(started_ms);
    INSERT INTO usage_rollups
        SELECT account_id, g.name, (started_ms / g.ms) * g.ms, key_id, COALESCE(model, ''),
               COUNT(*), SUM(input_tokens), SUM(cached_input_tokens), SUM(output_tokens), SUM(cost_nanos),
               SUM(estimated), SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END)
        FROM usage_records,
             (SELECT 'minute' AS name, 60000 AS ms UNION ALL SELECT 'hour', 3600000 UNION ALL SELECT 'day', 86400000) g
        GROUP BY 1, 2, 3, 4, 5;
    CREATE TRIGGER usage_rollups_insert AFTER INSERT ON usage_records BEGIN
        INSERT INTO usage_rollups
            SELECT NEW.account_id, g.name, (NEW.started_ms / g.ms) * g.ms, NEW.key_id, COALESCE(NEW.model, ''),
                   1, NEW.input_tokens, NEW.cached_input_tokens, NEW.output_tokens, NEW.cost_nanos,
                   NEW.estimated, CASE WHEN NEW.status >= 400 THEN 1 ELSE 0 END
            FROM (SELECT 'minute' AS name, 60000 AS ms UNION ALL SELECT 'hour', 3600000 UNION ALL SELECT 'day', 86400000) g
            WHERE true
        ON CONFLICT (account_id, granularity, bucket_ms, key_id, model) DO UPDATE SET
            requests = requests + 1,
            input_tokens = input_tokens + excluded.input_tokens,
            cached_input_tokens = cached_input_tokens + excluded.cached_input_tokens,
            output_tokens = output_tokens + excluded.output_tokens,
            cost_nanos = cost_nanos + excluded.cost_nanos,
            estimated_requests = estimated_requests + excluded.estimated_requests,
            error_requests = error_requests + excluded.error_requests;
    END;
    