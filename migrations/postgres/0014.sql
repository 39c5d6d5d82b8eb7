
    CREATE TABLE invitations (
        id          TEXT PRIMARY KEY,
        account_id  TEXT NOT NULL REFERENCES accounts(id),
        email       TEXT NOT NULL,
        role        TEXT NOT NULL CHECK (role IN ('owner','member','viewer')),
        token_hash  BYTEA NOT NULL UNIQUE,
        invited_by  TEXT,
        created_ms  BIGINT NOT NULL,
        expires_ms  BIGINT NOT NULL
    );
    CREATE INDEX invitations_email ON invitations(email);
    CREATE INDEX invitations_account ON invitations(account_id);
    