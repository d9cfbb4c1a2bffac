-- Attest Gate verifier store, schema 1. Portable SQL: the same file migrates
-- SQLite (the embedded default) and PostgreSQL (multi-replica deployments).

-- Nonces already used, remembered until they expire. The primary key makes
-- "insert if absent" atomic, so two replicas cannot both accept one nonce.
CREATE TABLE consumed_nonces (
    nonce_id   TEXT   PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX consumed_nonces_expiry ON consumed_nonces (expires_at);

-- Every credential issued, for introspection and revocation.
CREATE TABLE credentials (
    jti         TEXT   PRIMARY KEY,
    subject     TEXT   NOT NULL,
    session_id  TEXT   NOT NULL,
    parent_jti  TEXT,
    workload    TEXT   NOT NULL,
    jkt         TEXT   NOT NULL,
    scope       TEXT   NOT NULL,
    audience    TEXT   NOT NULL,
    issued_at   BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    test_root   BOOLEAN NOT NULL
);
CREATE INDEX credentials_session ON credentials (session_id);

-- Every decision, allow or deny, with its reason code.
CREATE TABLE audit_events (
    id        TEXT   PRIMARY KEY,
    at        BIGINT NOT NULL,
    action    TEXT   NOT NULL,
    decision  TEXT   NOT NULL,
    code      TEXT   NOT NULL,
    tee       TEXT,
    workload  TEXT,
    subject   TEXT,
    jti       TEXT,
    detail    TEXT   NOT NULL
);
CREATE INDEX audit_events_at ON audit_events (at);
