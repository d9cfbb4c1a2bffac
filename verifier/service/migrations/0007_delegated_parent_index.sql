-- Attest Gate verifier store, schema 7: only delegated credentials in the
-- parent index. Portable SQL, like the others.

-- Credentials are found by their parent only to cascade a revocation to the
-- delegated ones (`parent_jti = $1`). An attested credential has no parent,
-- and every one of them used to add a NULL entry to this index: one more
-- page written per batch of attestations, for entries no query reads.
DROP INDEX credentials_parent;
CREATE INDEX credentials_parent ON credentials (parent_jti) WHERE parent_jti IS NOT NULL;
