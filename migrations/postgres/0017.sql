
    CREATE TABLE alert_rules (
        id          TEXT COLLATE "C" PRIMARY KEY,
        account_id  TEXT NOT NULL,
        kind        TEXT NOT NULL,
        key_id      TEXT,
        threshold   BIGINT NOT NULL,
        webhook_url TEXT,
        email       BOOLEAN NOT NULL,
        fired       TEXT,
        created_ms  BIGINT NOT NULL
    );
    CREATE INDEX alert_rules_account ON alert_rules(account_id);
    CREATE TABLE alert_deliveries (
        id              TEXT COLLATE "C" PRIMARY KEY,
        rule_id         TEXT,
        account_id      TEXT,
        user_id         TEXT,
        channel         TEXT NOT NULL,
        target          TEXT NOT NULL,
        event           TEXT NOT NULL,
        payload         TEXT NOT NULL,
        status          TEXT NOT NULL,
        attempts        INTEGER NOT NULL,
        next_attempt_ms BIGINT NOT NULL,
        last_status     INTEGER,
        last_error      TEXT,
        created_ms      BIGINT NOT NULL,
        delivered_ms    BIGINT
    );
    CREATE INDEX alert_deliveries_due ON alert_deliveries(status, next_attempt_ms);
    CREATE INDEX alert_deliveries_account ON alert_deliveries(account_id, created_ms);
    CREATE INDEX alert_deliveries_user ON alert_deliveries(user_id);
    CREATE TABLE privacy_notices (
        version    TEXT COLLATE "C" PRIMARY KEY,
        noticed_ms BIGINT NOT NULL
    );
