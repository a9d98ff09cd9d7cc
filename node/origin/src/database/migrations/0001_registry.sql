-- The deployment registry: apps (their active version and activation history), every version
-- uploaded, and the fleet-wide revision that moves whenever what nodes should run changes.
-- Records are the same JSON the embedded engine stores.

CREATE TABLE registry_meta (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    revision bigint NOT NULL
);
INSERT INTO registry_meta (revision) VALUES (0);

CREATE TABLE registry_apps (
    name text PRIMARY KEY,
    record jsonb NOT NULL
);

CREATE TABLE registry_versions (
    app text NOT NULL REFERENCES registry_apps (name) ON DELETE CASCADE,
    version bigint NOT NULL,
    record jsonb NOT NULL,
    PRIMARY KEY (app, version)
);
