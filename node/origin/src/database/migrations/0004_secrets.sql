-- Apps' secrets, sealed with the origins' key file (ChaCha20-Poly1305, bound to app/name):
-- the database never holds a value in clear. Changing one moves registry_meta's revision in
-- the same transaction, as any change of what nodes run does.

CREATE TABLE registry_secrets (
    app text NOT NULL REFERENCES registry_apps (name) ON DELETE CASCADE,
    name text NOT NULL,
    record jsonb NOT NULL,
    PRIMARY KEY (app, name)
);
