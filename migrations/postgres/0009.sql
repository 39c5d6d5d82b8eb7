
    ALTER TABLE accounts ADD COLUMN rpm BIGINT;
    ALTER TABLE accounts ADD COLUMN tpm BIGINT;
    