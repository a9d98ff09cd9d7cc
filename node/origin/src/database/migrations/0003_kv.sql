-- The KV authority: the current entry of every key, the ordered log of every version nodes
-- resume from, each write's outcome (so a retry through any origin gets the same answer), and
-- each tenant's bytes. Entries are stored in the KV's own encoding (as the embedded store
-- keeps them), so their size is the same in both engines and a move between them is a copy.
--
-- Versions are one global order across every origin: a round of writes holds the kv_meta row
-- (SELECT ... FOR UPDATE) from its first read to its commit, so rounds commit one after
-- another and whatever version a reader sees committed, it sees every version before it.
-- Keys sort by their bytes (COLLATE "C"), as the nodes' stores and the embedded engine sort
-- them, so snapshots and listings page the same way everywhere.

CREATE TABLE kv_meta (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_version bigint NOT NULL,
    compacted_through bigint NOT NULL
);
INSERT INTO kv_meta (singleton, last_version, compacted_through) VALUES (true, 0, 0);

CREATE TABLE kv_current (
    namespace text COLLATE "C" NOT NULL,
    key text COLLATE "C" NOT NULL,
    version bigint NOT NULL,
    entry bytea NOT NULL,
    PRIMARY KEY (namespace, key)
);

CREATE TABLE kv_log (
    version bigint PRIMARY KEY,
    entry bytea NOT NULL
);

-- A write's id is unsigned at its writer; it is kept as the bigint with the same bits.
CREATE TABLE kv_outcomes (
    writer text NOT NULL,
    id bigint NOT NULL,
    version bigint NOT NULL,
    outcome bytea NOT NULL,
    PRIMARY KEY (writer, id)
);
CREATE INDEX kv_outcomes_by_version ON kv_outcomes (version);

CREATE TABLE kv_usage (
    tenant text PRIMARY KEY,
    bytes bigint NOT NULL
);
