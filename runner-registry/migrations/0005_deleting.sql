-- Content the garbage collector has decided to delete. The mark is committed before the
-- object is deleted, and the row is deleted after it, so a collector killed in between
-- leaves a marked row (its next run finishes it), never an unmarked row naming a missing
-- object. A commit refuses marked content, a client is never told it exists, and an
-- upload of the same content clears the mark under the content's advisory lock.

ALTER TABLE blobs ADD COLUMN deleting BOOLEAN NOT NULL DEFAULT false;

CREATE INDEX blobs_deleting ON blobs (sha256) WHERE deleting;

-- When each number was taken: content its organization sent since then is spared by the
-- collector while the number is kept reserved (a registration in flight touches it).
ALTER TABLE models ADD COLUMN created_at TIMESTAMPTZ NOT NULL DEFAULT now();

-- Who may read a content, by content: the collector asks it of every candidate, and
-- deletes a content's grants with it.
CREATE INDEX grants_by_content ON grants (sha256);
