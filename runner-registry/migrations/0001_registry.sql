-- The registry's metadata. File contents live in the object store, named by sha256
-- (blobs/sha256/AB/SHA256); a row of `blobs` exists only once its object is complete.

CREATE TABLE repositories (
    organization TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (organization, name)
);

-- A number is taken `uploading` (manifest NULL) and becomes `ready` in the one
-- transaction that writes its manifest and its files.
CREATE TABLE models (
    organization TEXT NOT NULL,
    repository TEXT NOT NULL,
    number BIGINT NOT NULL CHECK (number > 0),
    state TEXT NOT NULL CHECK (state IN ('uploading', 'ready')),
    manifest TEXT,
    manifest_sha256 TEXT,
    touched_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (organization, repository, number),
    FOREIGN KEY (organization, repository) REFERENCES repositories ON DELETE CASCADE,
    CHECK ((state = 'ready') = (manifest IS NOT NULL))
);

CREATE TABLE blobs (
    sha256 TEXT PRIMARY KEY,
    size BIGINT NOT NULL CHECK (size >= 0),
    touched_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Which organizations may read (and be told of) which content: those that sent it and
-- those whose models name it.
CREATE TABLE grants (
    organization TEXT NOT NULL,
    sha256 TEXT NOT NULL REFERENCES blobs ON DELETE CASCADE,
    PRIMARY KEY (organization, sha256)
);

CREATE TABLE model_files (
    organization TEXT NOT NULL,
    repository TEXT NOT NULL,
    number BIGINT NOT NULL,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL REFERENCES blobs,
    PRIMARY KEY (organization, repository, number, path),
    FOREIGN KEY (organization, repository, number) REFERENCES models ON DELETE CASCADE
);
CREATE INDEX model_files_by_sha256 ON model_files (sha256);

-- Multipart uploads in flight, so that garbage collection can abort those a replica
-- left behind (killed, or cut off from its client).
CREATE TABLE uploads (
    path TEXT NOT NULL,
    upload_id TEXT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (path, upload_id)
);

CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    organization TEXT NOT NULL,
    access TEXT NOT NULL CHECK (access IN ('read', 'write')),
    sha256 TEXT NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
