-- Attest Gate verifier store, schema 2: delegation, revocation, relying-party
-- clients, reappraisal evidence and a tamper-evident (hash-chained) audit log.
-- Portable SQL, like schema 1.

-- What a credential was issued on, so a revocation of a model or measurement
-- finds it, and how deep in a delegation chain it sits.
ALTER TABLE credentials ADD COLUMN model_digest TEXT NOT NULL DEFAULT '';
-- The measured registers' values (hex), space-separated.
ALTER TABLE credentials ADD COLUMN measurements TEXT NOT NULL DEFAULT '';
ALTER TABLE credentials ADD COLUMN depth INTEGER NOT NULL DEFAULT 0;
CREATE INDEX credentials_parent ON credentials (parent_jti);
CREATE INDEX credentials_jkt ON credentials (jkt);
CREATE INDEX credentials_expiry ON credentials (expires_at);

-- The evidence each attested session was issued on, kept while the session
-- lives, so `verifier reappraise` can judge it again under new reference
-- values or collateral.
CREATE TABLE session_evidence (
    session_id   TEXT   PRIMARY KEY,
    tee          TEXT   NOT NULL,
    evidence     TEXT   NOT NULL, -- base64
    collateral   TEXT   NOT NULL, -- JSON object: file name -> base64
    model_digest TEXT   NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX session_evidence_expiry ON session_evidence (expires_at);

-- Revocations and quarantines. Never deleted: a lifted quarantine is marked,
-- so relying parties polling `GET /v1/revocations` see it lifted.
CREATE TABLE revocations (
    id           TEXT    PRIMARY KEY,
    kind         TEXT    NOT NULL, -- jti | session | workload | measurement | model
    target       TEXT    NOT NULL,
    mode         TEXT    NOT NULL, -- immediate | graceful | quarantine
    reason       TEXT    NOT NULL,
    cascade_from TEXT,             -- the revoked parent jti, for cascaded rows
    revoked_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL,
    lifted       BOOLEAN NOT NULL
);
CREATE INDEX revocations_updated ON revocations (updated_at);
CREATE INDEX revocations_target ON revocations (kind, target);

-- Relying parties allowed to introspect tokens (RFC 7662 client
-- authentication). Only the secret's SHA-256 is stored.
CREATE TABLE rp_clients (
    client_id     TEXT   PRIMARY KEY,
    secret_sha256 TEXT   NOT NULL,
    created_at    BIGINT NOT NULL
);

-- The audit log becomes a hash chain: each record names the previous
-- record's hash and its own. `audit_head` holds the last sequence number and
-- hash; appending locks it, so replicas append one at a time.
ALTER TABLE audit_events ADD COLUMN seq BIGINT;
ALTER TABLE audit_events ADD COLUMN actor TEXT;
ALTER TABLE audit_events ADD COLUMN session_id TEXT;
ALTER TABLE audit_events ADD COLUMN workload_version TEXT;
ALTER TABLE audit_events ADD COLUMN policy_version TEXT;
ALTER TABLE audit_events ADD COLUMN evidence_sha384 TEXT;
ALTER TABLE audit_events ADD COLUMN prev_hash TEXT;
ALTER TABLE audit_events ADD COLUMN hash TEXT;
CREATE UNIQUE INDEX audit_events_seq ON audit_events (seq);

CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY,
    seq  BIGINT  NOT NULL,
    hash TEXT    NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
    VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
