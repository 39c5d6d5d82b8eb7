
    DROP TRIGGER usage_rollup;
    DROP TRIGGER usage_rollups_insert;
    