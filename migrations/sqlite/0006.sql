
    ALTER TABLE api_keys ADD COLUMN allowed_regions TEXT;
    ALTER TABLE usage_records ADD COLUMN region TEXT;
    