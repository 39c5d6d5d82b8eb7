
    ALTER TABLE usage_records ADD COLUMN attempts BIGINT NOT NULL DEFAULT 1;
    