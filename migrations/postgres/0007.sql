
    ALTER TABLE accounts ADD COLUMN allowed_regions TEXT;
    