
    ALTER TABLE usage_records ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1;
    