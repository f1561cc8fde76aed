-- Traffic splits: an alias may send a share of its requests to a second model (its
-- canary), which the foreign key keeps from being deleted as it does the first. Each
-- move records the split before and after, and why, when the mover said.

ALTER TABLE aliases
    ADD COLUMN canary_number BIGINT,
    ADD COLUMN canary_percent SMALLINT,
    ADD CONSTRAINT aliases_canary_check CHECK (
        (canary_number IS NULL) = (canary_percent IS NULL)
        AND (canary_percent IS NULL OR canary_percent BETWEEN 0 AND 100)
        AND (canary_number IS NULL OR canary_number <> number)
    ),
    ADD CONSTRAINT aliases_canary_fkey FOREIGN KEY (organization, repository, canary_number) REFERENCES models;
CREATE INDEX aliases_by_canary ON aliases (organization, repository, canary_number) WHERE canary_number IS NOT NULL;

ALTER TABLE alias_moves
    ADD COLUMN from_canary_number BIGINT,
    ADD COLUMN from_canary_percent SMALLINT,
    ADD COLUMN to_canary_number BIGINT,
    ADD COLUMN to_canary_percent SMALLINT,
    ADD COLUMN reason TEXT;
