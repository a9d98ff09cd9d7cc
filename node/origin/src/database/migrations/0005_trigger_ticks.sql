-- The last tick fired of each cron trigger (unix seconds; NULL before its first), by app and
-- trigger key. A node fires a tick only once its claim moved this row forward, so every tick
-- fires once across all origins and nodes.

CREATE TABLE trigger_ticks (
    app text NOT NULL REFERENCES registry_apps (name) ON DELETE CASCADE,
    trigger text NOT NULL,
    last_tick bigint,
    PRIMARY KEY (app, trigger)
);
