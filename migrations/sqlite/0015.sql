
    CREATE TABLE invitations (
        id          TEXT PRIMARY KEY,
        account_id  TEXT NOT NULL REFERENCES accounts(id),
        email       TEXT NOT NULL,
        role        TEXT NOT NULL CHECK (role IN ('owner','member','viewer')),
        token_hash  BLOB NOT NULL UNIQUE,
        invited_by  TEXT,
        created_ms  INTEGER NOT NULL,
        expires_ms  INTEGER NOT NULL
    );
    CREATE INDEX invitations_email ON invitations(email);
    CREATE INDEX invitations_account ON invitations(account_id);
    