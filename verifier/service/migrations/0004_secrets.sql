-- Attest Gate verifier store, schema 4: attested secret release. Portable
-- SQL, like the others.

-- The encryption key a session's evidence bound (binding v2), the only key
-- its secrets are released to. Kept while the session lives.
CREATE TABLE session_encryption_keys (
    session_id TEXT   PRIMARY KEY,
    jwk        TEXT   NOT NULL, -- the public JWK (EC P-256)
    expires_at BIGINT NOT NULL
);
CREATE INDEX session_encryption_keys_expiry ON session_encryption_keys (expires_at);

-- Secrets, versioned. Only the highest version of a name is ever released;
-- when it is superseded or retired its ciphertext is wiped, so one sealed
-- value per name is kept. `sealed` is base64 of the AES-256-GCM nonce,
-- ciphertext and tag under the key-encryption key named by `kek_id`, with
-- the name and version as additional data (no row can be swapped for
-- another).
CREATE TABLE secrets (
    name                  TEXT    NOT NULL,
    version               BIGINT  NOT NULL,
    sealed                TEXT    NOT NULL,
    kek_id                TEXT    NOT NULL,
    release_in_quarantine BOOLEAN NOT NULL,
    not_after             BIGINT,
    created_at            BIGINT  NOT NULL,
    retired_at            BIGINT,
    PRIMARY KEY (name, version)
);
