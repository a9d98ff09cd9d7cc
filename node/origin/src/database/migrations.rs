//! The schema, as numbered migrations applied in order, each once, at every origin's start.
//! Origins that start together take turns (a transaction-scoped advisory lock), and an origin
//! refuses a database whose schema is newer than it knows.

use tokio_postgres::Client;

use super::DatabaseError;

/// Every migration, in order: (version, what it adds, its SQL). Append only: a released
/// migration is never edited, a change is a new one.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "the deployment registry",
        include_str!("migrations/0001_registry.sql"),
    ),
    (
        2,
        "uploaded components",
        include_str!("migrations/0002_components.sql"),
    ),
    (
        3,
        "the KV authority",
        include_str!("migrations/0003_kv.sql"),
    ),
    (
        4,
        "apps' secrets",
        include_str!("migrations/0004_secrets.sql"),
    ),
    (
        5,
        "cron triggers' last ticks",
        include_str!("migrations/0005_trigger_ticks.sql"),
    ),
];

/// The advisory lock origins take while migrating ("outpost" in ASCII).
const MIGRATION_LOCK: i64 = 0x006f_7574_706f_7374;

/// Bring the schema up to date.
pub(super) async fn run(client: &mut Client, shown: &str) -> anyhow::Result<()> {
    let refused = |e: tokio_postgres::Error| {
        let reason = e
            .as_db_error()
            .map_or_else(|| e.to_string(), |db| db.message().to_string());
        DatabaseError::Refused(shown.to_string(), format!("migrating the schema: {reason}"))
    };
    let txn = client.transaction().await.map_err(refused)?;
    txn.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(refused)?;
    txn.batch_execute(
        "CREATE TABLE IF NOT EXISTS outpost_schema (
             version integer PRIMARY KEY,
             name text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(refused)?;
    let current: i32 = txn
        .query_one("SELECT coalesce(max(version), 0) FROM outpost_schema", &[])
        .await
        .map_err(refused)?
        .get(0);
    let known = MIGRATIONS.last().map_or(0, |(version, _, _)| *version);
    if current > known {
        anyhow::bail!(
            "the database at {shown} has schema version {current}, newer than this origin knows \
             ({known}): upgrade this origin"
        );
    }
    for (version, name, sql) in MIGRATIONS.iter().filter(|(v, _, _)| *v > current) {
        txn.batch_execute(sql).await.map_err(refused)?;
        txn.execute(
            "INSERT INTO outpost_schema (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await
        .map_err(refused)?;
        tracing::info!(database = shown, version, name, "schema migration applied");
    }
    txn.commit().await.map_err(refused)?;
    Ok(())
}
