-- The sample of large content an organization sent (the sha256 of its size and of 16
-- windows of it): what a client asks about before it sends a file it has not hashed.
-- Only content the organization may read is told of (the join with grants), and a row
-- goes with its content.

CREATE TABLE samples (
    organization TEXT NOT NULL REFERENCES organizations ON DELETE CASCADE,
    sample TEXT NOT NULL,
    sha256 TEXT NOT NULL REFERENCES blobs ON DELETE CASCADE,
    PRIMARY KEY (organization, sample)
);

CREATE INDEX samples_by_content ON samples (sha256);
