
    DROP INDEX usage_key_time;
    