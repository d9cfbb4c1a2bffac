-- Attest Gate verifier store, schema 5: compact session evidence. Portable
-- SQL, like the others (SQLite stores BYTEA values as blobs).

-- Collateral files (TCB info, QE identity, CRLs, certificate chains) are
-- the same for every session of a platform: each is stored once, by the
-- SHA-256 of its bytes, and sessions name it. `expires_at` is at least the
-- expiry of every session naming it (it is moved forward, at most hourly,
-- when a later session names it), so pruning by expiry never removes a
-- file a live session needs.
CREATE TABLE collateral_files (
    sha256     TEXT   PRIMARY KEY, -- hex
    bytes      BYTEA  NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX collateral_files_expiry ON collateral_files (expires_at);

-- Sessions from now on keep their evidence as bytes and their collateral as
-- a JSON object (file name -> SHA-256); `evidence` and `collateral` stay
-- empty for them. Rows written before keep the old base64 columns.
ALTER TABLE session_evidence ADD COLUMN evidence_bytes BYTEA;
ALTER TABLE session_evidence ADD COLUMN collateral_refs TEXT;

-- Audit retention: records older than the retention are removed, and the
-- chain is then checked from the latest checkpoint: the sequence number and
-- hash of the last record removed, signed (compact JWS, ES256) by the data
-- directory's checkpoint key, which the database does not hold.
CREATE TABLE audit_checkpoints (
    seq        BIGINT PRIMARY KEY,
    hash       TEXT   NOT NULL,
    pruned_before BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    signature  TEXT   NOT NULL
);

-- The verified register values a credential was issued on are the same for
-- every credential of a workload image (and of a session's delegations):
-- each set is stored once, by the SHA-256 of its text, and credentials
-- name it in `register_set` (`measurements` stays empty for them). Rows
-- written before keep their `measurements` text.
CREATE TABLE register_sets (
    sha256    TEXT PRIMARY KEY,
    registers TEXT NOT NULL -- hex values, space-separated
);
ALTER TABLE credentials ADD COLUMN register_set TEXT;
