-- Access a team can run: tokens with names, repository scopes, an admin right, expiry,
-- revocation and last use; and an audit log of every change. Existing tokens keep
-- working: no name (shown by id), every repository, no expiry.

ALTER TABLE tokens DROP CONSTRAINT IF EXISTS tokens_access_check;
ALTER TABLE tokens ADD CONSTRAINT tokens_access_check CHECK (access IN ('read', 'write', 'admin'));
ALTER TABLE tokens
    ADD COLUMN name TEXT NOT NULL DEFAULT '',
    ADD COLUMN repositories TEXT[] NOT NULL DEFAULT '{}',
    ADD COLUMN expires_at TIMESTAMPTZ,
    ADD COLUMN revoked_at TIMESTAMPTZ,
    ADD COLUMN last_used_at TIMESTAMPTZ;

-- Append-only: the registry inserts and reads, never updates or deletes (nor does
-- deleting an organization's rows take its history with them: no foreign keys).
CREATE TABLE audit (
    id BIGSERIAL PRIMARY KEY,
    at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    organization TEXT NOT NULL,
    token_id TEXT NOT NULL,
    token_name TEXT NOT NULL,
    action TEXT NOT NULL,
    repository TEXT,
    target TEXT NOT NULL,
    address TEXT
);
CREATE INDEX audit_by_repository ON audit (organization, repository, id);
