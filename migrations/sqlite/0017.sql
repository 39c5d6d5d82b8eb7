
    CREATE TABLE alert_rules (
        id          TEXT PRIMARY KEY,
        account_id  TEXT NOT NULL,
        kind        TEXT NOT NULL,
        key_id      TEXT,
        threshold   INTEGER NOT NULL,
        webhook_url TEXT,
        email       INTEGER NOT NULL,
        fired       TEXT,
        created_ms  INTEGER NOT NULL
    );
    CREATE INDEX alert_rules_account ON alert_rules(account_id);
    CREATE TABLE alert_deliveries (
        id              TEXT PRIMARY KEY,
        rule_id         TEXT,
        account_id      TEXT,
        user_id         TEXT,
        channel         TEXT NOT NULL,
        target          TEXT NOT NULL,
        event           TEXT NOT NULL,
        payload         TEXT NOT NULL,
        status          TEXT NOT NULL,
        attempts        INTEGER NOT NULL,
        next_attempt_ms INTEGER NOT NULL,
        last_status     INTEGER,
        last_error      TEXT,
        created_ms      INTEGER NOT NULL,
        delivered_ms    INTEGER
    );
    CREATE INDEX alert_deliveries_due ON alert_deliveries(status, next_attempt_ms);
    CREATE INDEX alert_deliveries_account ON alert_deliveries(account_id, created_ms);
    CREATE INDEX alert_deliveries_user ON alert_deliveries(user_id);
    CREATE TABLE privacy_notices (
        version    TEXT PRIMARY KEY,
        noticed_ms INTEGER NOT NULL
    );
