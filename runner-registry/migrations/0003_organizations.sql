-- Organizations as rows of their own: every repository, token and grant names one that
-- exists. Each insert of those creates its organization in the same statement (a
-- data-modifying WITH), so no writer needs a step of its own. Rows written before this
-- migration bring their organizations along.

CREATE TABLE organizations (
    name TEXT PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

INSERT INTO organizations (name)
    SELECT organization FROM repositories
    UNION SELECT organization FROM tokens
    UNION SELECT organization FROM grants
ON CONFLICT DO NOTHING;

ALTER TABLE repositories ADD FOREIGN KEY (organization) REFERENCES organizations ON DELETE CASCADE;
ALTER TABLE tokens ADD FOREIGN KEY (organization) REFERENCES organizations ON DELETE CASCADE;
ALTER TABLE grants ADD FOREIGN KEY (organization) REFERENCES organizations ON DELETE CASCADE;
