-- Aliases: names for model numbers that move (`iris:prod`), and every move. A model an
-- alias points at cannot be deleted: the foreign key refuses it (a repository's
-- deletion takes its aliases along).

CREATE TABLE aliases (
    organization TEXT NOT NULL,
    repository TEXT NOT NULL,
    name TEXT NOT NULL,
    number BIGINT NOT NULL,
    PRIMARY KEY (organization, repository, name),
    FOREIGN KEY (organization, repository) REFERENCES repositories ON DELETE CASCADE,
    FOREIGN KEY (organization, repository, number) REFERENCES models
);
CREATE INDEX aliases_by_model ON aliases (organization, repository, number);

CREATE TABLE alias_moves (
    id BIGSERIAL PRIMARY KEY,
    organization TEXT NOT NULL,
    repository TEXT NOT NULL,
    alias TEXT NOT NULL,
    from_number BIGINT,
    to_number BIGINT,
    at TIMESTAMPTZ NOT NULL DEFAULT now(),
    by_whom TEXT NOT NULL,
    forced BOOLEAN NOT NULL DEFAULT false,
    FOREIGN KEY (organization, repository) REFERENCES repositories ON DELETE CASCADE
);
CREATE INDEX alias_moves_by_alias ON alias_moves (organization, repository, alias, id);
