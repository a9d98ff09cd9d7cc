-- Uploaded components, content-addressed: one row per sha256 with its size, and its bytes in
-- chunks of at most 1 MiB, so one can be streamed to a node without holding it whole.

CREATE TABLE components (
    sha256 text PRIMARY KEY,
    size bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE component_chunks (
    sha256 text NOT NULL REFERENCES components (sha256) ON DELETE CASCADE,
    n integer NOT NULL,
    data bytea NOT NULL,
    PRIMARY KEY (sha256, n)
);
