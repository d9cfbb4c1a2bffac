-- Attest Gate verifier store, schema 6: a TDX quote's PCK chain stored once.
-- Portable SQL, like the others.

-- The bytes of a quote from its PCK chain on (the chain's PEM and any
-- padding) are alike in every quote of a platform: a session keeps the rest
-- in `evidence_bytes` and names these by content address in
-- `collateral_files`, which holds them as long as the session's other files.
-- NULL: `evidence_bytes` is the whole evidence (other TEEs, older rows).
ALTER TABLE session_evidence ADD COLUMN evidence_tail TEXT;
