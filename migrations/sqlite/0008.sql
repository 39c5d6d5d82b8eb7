
    CREATE TABLE providers (
        name        TEXT PRIMARY KEY,
        settings    TEXT NOT NULL,
        credential  BLOB,
        created_ms  INTEGER NOT NULL,
        updated_ms  INTEGER NOT NULL
    );
    CREATE TABLE providers_version (
        id       INTEGER PRIMARY KEY CHECK (id = 1),
        version  INTEGER NOT NULL
    );
    INSERT INTO providers_version VALUES (1, 0);
    