
    CREATE TABLE providers (
        name        TEXT PRIMARY KEY,
        settings    TEXT NOT NULL,
        credential  BYTEA,
        created_ms  BIGINT NOT NULL,
        updated_ms  BIGINT NOT NULL
    );
    CREATE TABLE providers_version (
        id       BIGINT PRIMARY KEY CHECK (id = 1),
        version  BIGINT NOT NULL
    );
    INSERT INTO providers_version VALUES (1, 0);
    