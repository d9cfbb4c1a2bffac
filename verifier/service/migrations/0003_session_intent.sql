-- What a session was granted for, so reappraisal re-runs the same decision
-- (reference values and Cedar policy) as the attestation. Rows from before
-- this migration have an empty principal: reappraisal lists them as not
-- judged rather than guessing. Evidence and collateral are stored as the
-- decoded bytes re-encoded in standard base64, whatever alphabet the agent
-- sent.
ALTER TABLE session_evidence ADD COLUMN principal TEXT NOT NULL DEFAULT '';
ALTER TABLE session_evidence ADD COLUMN task_id TEXT NOT NULL DEFAULT '';
ALTER TABLE session_evidence ADD COLUMN scopes TEXT NOT NULL DEFAULT '';
ALTER TABLE session_evidence ADD COLUMN audience TEXT NOT NULL DEFAULT '';
