
    ALTER TABLE users ADD COLUMN privacy_seen_version TEXT;
    