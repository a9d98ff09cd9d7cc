//! The KV authority's state in PostgreSQL (`0003_kv.sql`), shared by every origin of a fleet.
//!
//! A round of writes is one transaction on this store's own connection. It begins by locking
//! the `kv_meta` row, so rounds from every origin commit one after another in one global order
//! of versions; it reads, in three queries, everything the round's writes will look at (their
//! recorded outcomes, the keys they touch, their tenants' bytes); and it commits the entries,
//! the log, the outcomes and the bytes together, with a notification on [`CHANNEL`] that tells
//! the other origins to look. Whatever the other origins committed since this store last
//! looked comes back from `begin_round` and `others_committed`, read from the log by version.
//!
//! Any error inside a round drops the connection (the server rolls the transaction back) and
//! the next call connects again, so a restarted or failed-over database costs the writes of
//! the rounds in flight (answered as failed, never acknowledged) and nothing else.
//!
//! The store runs on the authority's own thread, which is not the runtime's: each statement is
//! driven to completion there with [`Handle::block_on`].

use std::cell::{Cell, RefCell, RefMut};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use outpost_kv::authority::{IncomingWrite, add_usage, within_budget};
use outpost_kv::error::StorageError;
use outpost_kv::model::{decode_key_info, reclaimable};
use outpost_kv::protocol::{decode, encode};
use outpost_kv::scope::tenant_of;
use outpost_kv::{AuthorityStore, Batch, Entry, KeyInfo, RedbAuthorityStore, Sweep, WriteOutcome};
use tokio::runtime::Handle;
use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use crate::database::{Database, DatabaseError};

/// The notification channel a commit announces itself on.
pub const CHANNEL: &str = "outpost_kv";

/// Rows fetched per query while a read fills its byte budget.
const PAGE: i64 = 64;

/// The most versions, and bytes, of the other origins' commits relayed in one batch; past
/// either, the nodes are sent to the store for them (a catch-up) instead.
const RELAY_MAX_VERSIONS: u64 = 10_000;
const RELAY_MAX_BYTES: i64 = 32 << 20;

/// What [`PgAuthorityStore::import`] moved.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Imported {
    /// Keys (current entries, deletions not yet reclaimed included).
    pub entries: usize,
    /// Log entries, from the version the log was compacted through.
    pub log: usize,
    /// Recorded write outcomes.
    pub outcomes: usize,
    /// The newest version.
    pub version: u64,
}

/// What a round's writes will read, fetched when it begins.
#[derive(Default)]
struct Prefetched {
    outcomes: HashMap<(String, u64), Option<WriteOutcome>>,
    current: HashMap<(String, String), Option<Entry>>,
    usage: HashMap<String, u64>,
}

/// The KV authority's tables in the fleet's database.
pub struct PgAuthorityStore {
    db: Arc<Database>,
    runtime: Handle,
    /// This store's own connection; `None` once lost, until the next call connects again.
    client: RefCell<Option<Client>>,
    /// The newest version this origin has committed or relayed: its feed has every version
    /// up to here.
    last: u64,
    compacted_through: Cell<u64>,
    /// Set while a round's transaction is open.
    round: Option<Prefetched>,
}

impl PgAuthorityStore {
    /// Open the store on `db` (whose schema is up to date), at the newest version committed
    /// by any origin: its feed starts there, and nodes behind it catch up from the store.
    pub async fn open(db: Arc<Database>) -> anyhow::Result<PgAuthorityStore> {
        let client = db.own_connection().await?;
        let row = client
            .query_one("SELECT last_version, compacted_through FROM kv_meta", &[])
            .await
            .map_err(|e| db.error(e))?;
        Ok(PgAuthorityStore {
            last: row.get::<_, i64>(0) as u64,
            compacted_through: Cell::new(row.get::<_, i64>(1) as u64),
            runtime: Handle::current(),
            client: RefCell::new(Some(client)),
            db,
            round: None,
        })
    }

    /// Fill the KV tables of `db`, which must hold nothing yet, with everything `source`
    /// holds (current entries, the log since its compaction, the recorded outcomes, the
    /// tenants' bytes, the versions), in one transaction: the KV moved here from the embedded
    /// engine, with its versions and its de-duplication of retried writes intact.
    pub async fn import(db: &Database, source: &RedbAuthorityStore) -> anyhow::Result<Imported> {
        /// Bytes of entries read and written per statement.
        const CHUNK: usize = 4 << 20;
        let mut client = db.own_connection().await?;
        let failed = |e| db.error(e);
        let txn = client.transaction().await.map_err(failed)?;
        let row = txn
            .query_one(
                "SELECT last_version, (SELECT count(*) FROM kv_current) FROM kv_meta FOR UPDATE",
                &[],
            )
            .await
            .map_err(failed)?;
        let (last, held): (i64, i64) = (row.get(0), row.get(1));
        if last != 0 || held != 0 {
            anyhow::bail!(
                "the KV in {} is not empty (version {last}, {held} keys)",
                db.shown()
            );
        }
        let mut imported = Imported::default();
        let mut usage = HashMap::new();
        let mut after = None;
        loop {
            let (entries, more) = source.snapshot_after(after.as_ref(), CHUNK)?;
            let namespaces: Vec<&str> = entries.iter().map(|e| e.namespace.as_str()).collect();
            let keys: Vec<&str> = entries.iter().map(|e| e.key.as_str()).collect();
            let versions: Vec<i64> = entries.iter().map(|e| e.version as i64).collect();
            let bytes: Vec<Vec<u8>> = entries.iter().map(encode).collect();
            for (namespace, bytes) in namespaces.iter().zip(&bytes) {
                add_usage(&mut usage, namespace, bytes.len() as i64);
            }
            txn.execute(
                "INSERT INTO kv_current (namespace, key, version, entry) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::bytea[])",
                &[&namespaces, &keys, &versions, &bytes],
            )
            .await
            .map_err(failed)?;
            imported.entries += entries.len();
            after = entries.last().map(|e| (e.namespace.clone(), e.key.clone()));
            if !more {
                break;
            }
        }
        let mut from = source.compacted_through();
        while let Some(entries) = source.log_after(from, CHUNK)?.filter(|e| !e.is_empty()) {
            let versions: Vec<i64> = entries.iter().map(|e| e.version as i64).collect();
            let bytes: Vec<Vec<u8>> = entries.iter().map(encode).collect();
            txn.execute(
                "INSERT INTO kv_log (version, entry) SELECT * FROM unnest($1::int8[], $2::bytea[])",
                &[&versions, &bytes],
            )
            .await
            .map_err(failed)?;
            imported.log += entries.len();
            from = entries.last().map_or(from, |e| e.version);
        }
        for chunk in source.outcomes()?.chunks(1000) {
            let writers: Vec<&str> = chunk.iter().map(|o| o.0.as_str()).collect();
            let ids: Vec<i64> = chunk.iter().map(|o| o.1 as i64).collect();
            let versions: Vec<i64> = chunk.iter().map(|o| o.2 as i64).collect();
            let outcomes: Vec<Vec<u8>> = chunk.iter().map(|o| encode(&o.3)).collect();
            txn.execute(
                "INSERT INTO kv_outcomes (writer, id, version, outcome) \
                 SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[], $4::bytea[])",
                &[&writers, &ids, &versions, &outcomes],
            )
            .await
            .map_err(failed)?;
            imported.outcomes += chunk.len();
        }
        let (tenants, bytes): (Vec<String>, Vec<i64>) = usage.into_iter().unzip();
        txn.execute(
            "INSERT INTO kv_usage (tenant, bytes) SELECT * FROM unnest($1::text[], $2::int8[])",
            &[&tenants, &bytes],
        )
        .await
        .map_err(failed)?;
        imported.version = source.last_version();
        txn.execute(
            "UPDATE kv_meta SET last_version = $1, compacted_through = $2",
            &[
                &(imported.version as i64),
                &(source.compacted_through() as i64),
            ],
        )
        .await
        .map_err(failed)?;
        txn.commit().await.map_err(failed)?;
        Ok(imported)
    }

    /// The connection, made again first if it was lost.
    fn client(&self) -> Result<RefMut<'_, Client>, StorageError> {
        let mut slot = self.client.borrow_mut();
        if slot.as_ref().is_none_or(Client::is_closed) {
            *slot = None;
            let client = self
                .runtime
                .block_on(self.db.own_connection())
                .map_err(storage_error)?;
            *slot = Some(client);
        }
        Ok(RefMut::map(slot, |c| c.as_mut().expect("connected above")))
    }

    /// Run `statements` on the connection; on an error, drop the connection (rolling back
    /// any open transaction) and report it.
    fn run<T>(
        &self,
        statements: impl AsyncFnOnce(&Client) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, StorageError> {
        let client = self.client()?;
        let result = self.runtime.block_on(statements(&client));
        drop(client);
        result.map_err(|err| {
            self.client.replace(None);
            storage_error(self.db.error(err))
        })
    }

    /// What the others committed in (`self.last`, `newest`], as a batch to relay (or the
    /// empty batch from `newest` that sends nodes to the store), with `self.last` moved on.
    /// Runs inside whatever transaction is open.
    async fn relay(
        client: &Client,
        last: u64,
        newest: u64,
        compacted_through: u64,
    ) -> Result<Option<Batch>, tokio_postgres::Error> {
        if newest <= last {
            return Ok(None);
        }
        let skip = Batch {
            from: newest,
            through: newest,
            entries: Vec::new(),
        };
        let count = newest - last;
        if last < compacted_through || count > RELAY_MAX_VERSIONS {
            return Ok(Some(skip));
        }
        let range: [&(dyn ToSql + Sync); 2] = [&(last as i64), &(newest as i64)];
        let bytes: i64 = client
            .query_one(
                "SELECT coalesce(sum(octet_length(entry)), 0)::int8 FROM kv_log \
                 WHERE version > $1 AND version <= $2",
                &range,
            )
            .await?
            .get(0);
        if bytes > RELAY_MAX_BYTES {
            return Ok(Some(skip));
        }
        let rows = client
            .query(
                "SELECT entry FROM kv_log WHERE version > $1 AND version <= $2 ORDER BY version",
                &range,
            )
            .await?;
        let entries: Option<Vec<Entry>> = rows
            .iter()
            .map(|row| decode::<Entry>(row.get::<_, &[u8]>(0)).ok())
            .collect();
        // Compacted meanwhile, or a row that does not decode: the store has them all.
        match entries {
            Some(entries) if entries.len() as u64 == count => Ok(Some(Batch {
                from: last,
                through: newest,
                entries,
            })),
            _ => Ok(Some(skip)),
        }
    }

    /// Entries read a page at a time by `page` (given how many rows were read so far) until
    /// `max_bytes` are taken (at least one), and whether rows remain past them: the pages are
    /// fetched only as the budget reaches them.
    fn within_pages(
        &self,
        max_bytes: usize,
        mut page: impl FnMut(i64) -> Result<Vec<Entry>, StorageError>,
    ) -> Result<(Vec<Entry>, bool), StorageError> {
        let (mut fetched, mut read, mut last_page) = (VecDeque::new(), 0, false);
        let entries = std::iter::from_fn(|| {
            if fetched.is_empty() && !last_page {
                match page(read) {
                    Ok(rows) => {
                        last_page = (rows.len() as i64) < PAGE;
                        read += rows.len() as i64;
                        fetched.extend(rows);
                    }
                    Err(err) => return Some(Err(err)),
                }
            }
            fetched.pop_front().map(Ok)
        });
        within_budget(entries, max_bytes)
    }

    /// The entries (each row's first column) `sql` selects.
    fn query_entries(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Entry>, StorageError> {
        let rows = self.run(async |c| c.query(sql, params).await)?;
        rows.iter()
            .map(|row| decode_entry(row.get::<_, &[u8]>(0)))
            .collect()
    }
}

/// A database error as the authority hears it: out of reach (its writes are answered
/// "unavailable", to retry) or refusing.
fn storage_error(err: DatabaseError) -> StorageError {
    match err {
        DatabaseError::Unavailable(..) => StorageError::Unavailable(err.to_string()),
        DatabaseError::Refused(..) => StorageError::Failed(err.to_string()),
    }
}

fn decode_entry(bytes: &[u8]) -> Result<Entry, StorageError> {
    decode(bytes).map_err(|e| StorageError::Failed(format!("corrupt entry: {e}")))
}

fn decode_outcome(bytes: &[u8]) -> Result<WriteOutcome, StorageError> {
    decode(bytes).map_err(|e| StorageError::Failed(format!("corrupt outcome: {e}")))
}

/// Where a scan of keys in order starts: after (`namespace`, `key`), or from the first.
fn after_key(after: Option<&(String, String)>) -> (String, String, bool) {
    match after {
        Some((namespace, key)) => (namespace.clone(), key.clone(), true),
        None => (String::new(), String::new(), false),
    }
}

impl AuthorityStore for PgAuthorityStore {
    fn last_version(&self) -> u64 {
        self.last
    }

    fn get(&self, namespace: &str, key: &str) -> Result<Option<Entry>, StorageError> {
        if let Some(known) = self
            .round
            .as_ref()
            .and_then(|r| r.current.get(&(namespace.to_string(), key.to_string())))
        {
            return Ok(known.clone());
        }
        let row = self.run(async |c| {
            c.query_opt(
                "SELECT entry FROM kv_current WHERE namespace = $1 AND key = $2",
                &[&namespace, &key],
            )
            .await
        })?;
        row.map(|row| decode_entry(row.get::<_, &[u8]>(0)))
            .transpose()
    }

    fn outcome(&self, writer: &str, id: u64) -> Result<Option<WriteOutcome>, StorageError> {
        if let Some(known) = self
            .round
            .as_ref()
            .and_then(|r| r.outcomes.get(&(writer.to_string(), id)))
        {
            return Ok(known.clone());
        }
        let row = self.run(async |c| {
            c.query_opt(
                "SELECT outcome FROM kv_outcomes WHERE writer = $1 AND id = $2",
                &[&writer, &(id as i64)],
            )
            .await
        })?;
        row.map(|row| decode_outcome(row.get::<_, &[u8]>(0)))
            .transpose()
    }

    fn begin_round(&mut self, writes: &[IncomingWrite]) -> Result<Option<Batch>, StorageError> {
        let writers: Vec<&str> = writes.iter().map(|w| w.writer.as_str()).collect();
        let ids: Vec<i64> = writes.iter().map(|w| w.id as i64).collect();
        let (namespaces, keys): (Vec<&str>, Vec<&str>) = writes
            .iter()
            .flat_map(|w| w.op.keys().into_iter().map(|k| (w.op.namespace(), k)))
            .unzip();
        let mut tenants: Vec<&str> = namespaces.iter().map(|n| tenant_of(n)).collect();
        tenants.sort_unstable();
        tenants.dedup();
        let last = self.last;
        let (meta, others, outcomes, current, usage) = self.run(async |c| {
            c.batch_execute("BEGIN").await?;
            let meta = c
                .query_one(
                    "SELECT last_version, compacted_through FROM kv_meta FOR UPDATE",
                    &[],
                )
                .await?;
            let (newest, compacted) = (meta.get::<_, i64>(0) as u64, meta.get::<_, i64>(1) as u64);
            let others = Self::relay(c, last, newest, compacted).await?;
            // Independent reads: sent together, answered in one round trip's time.
            let by_write: [&(dyn ToSql + Sync); 2] = [&writers, &ids];
            let by_key: [&(dyn ToSql + Sync); 2] = [&namespaces, &keys];
            let by_tenant: [&(dyn ToSql + Sync); 1] = [&tenants];
            let (outcomes, current, usage) = futures::try_join!(
                c.query(
                    "SELECT o.writer, o.id, o.outcome FROM kv_outcomes o \
                     JOIN unnest($1::text[], $2::int8[]) AS w (writer, id) \
                     ON o.writer = w.writer AND o.id = w.id",
                    &by_write,
                ),
                c.query(
                    "SELECT c.namespace, c.key, c.entry FROM kv_current c \
                     JOIN unnest($1::text[], $2::text[]) AS k (namespace, key) \
                     ON c.namespace = k.namespace AND c.key = k.key",
                    &by_key,
                ),
                c.query(
                    "SELECT tenant, greatest(bytes, 0) FROM kv_usage WHERE tenant = ANY($1)",
                    &by_tenant,
                ),
            )?;
            Ok(((newest, compacted), others, outcomes, current, usage))
        })?;
        let mut prefetched = Prefetched::default();
        for (writer, id) in writers.iter().zip(&ids) {
            prefetched
                .outcomes
                .insert((writer.to_string(), *id as u64), None);
        }
        for row in &outcomes {
            let key = (row.get::<_, String>(0), row.get::<_, i64>(1) as u64);
            prefetched
                .outcomes
                .insert(key, Some(decode_outcome(row.get::<_, &[u8]>(2))?));
        }
        for (namespace, key) in namespaces.iter().zip(&keys) {
            prefetched
                .current
                .insert((namespace.to_string(), key.to_string()), None);
        }
        for row in &current {
            let key = (row.get::<_, String>(0), row.get::<_, String>(1));
            prefetched
                .current
                .insert(key, Some(decode_entry(row.get::<_, &[u8]>(2))?));
        }
        for tenant in &tenants {
            prefetched.usage.insert(tenant.to_string(), 0);
        }
        for row in &usage {
            prefetched
                .usage
                .insert(row.get::<_, String>(0), row.get::<_, i64>(1) as u64);
        }
        self.last = self.last.max(meta.0);
        self.compacted_through.set(meta.1);
        self.round = Some(prefetched);
        Ok(others)
    }

    fn end_round(&mut self) {
        if self.round.take().is_some() {
            let _ = self.run(async |c| c.batch_execute("ROLLBACK").await);
        }
    }

    fn others_committed(&mut self) -> Result<Option<Batch>, StorageError> {
        let last = self.last;
        let (others, newest, compacted) = self.run(async |c| {
            let meta = c
                .query_one("SELECT last_version, compacted_through FROM kv_meta", &[])
                .await?;
            let (newest, compacted) = (meta.get::<_, i64>(0) as u64, meta.get::<_, i64>(1) as u64);
            Ok((
                Self::relay(c, last, newest, compacted).await?,
                newest,
                compacted,
            ))
        })?;
        self.last = self.last.max(newest);
        self.compacted_through.set(compacted);
        Ok(others)
    }

    fn commit(
        &mut self,
        entries: &[Entry],
        outcomes: &[(String, u64, WriteOutcome)],
    ) -> Result<(), StorageError> {
        let Some(prefetched) = self.round.take() else {
            return Err(StorageError::Failed("a commit outside a round".into()));
        };
        let mut last = self.last;
        let mut delta = HashMap::new();
        // What each key holds before this commit, as the round read it; a key no write of
        // the round named is read now (it is locked against other origins all the same).
        let mut before: HashMap<(String, String), Option<u64>> = prefetched
            .current
            .into_iter()
            .map(|(key, entry)| (key, entry.map(|e| encode(&e).len() as u64)))
            .collect();
        for entry in entries {
            if entry.version != last + 1 {
                self.client.replace(None);
                return Err(StorageError::Failed(format!(
                    "version {} does not follow {last}",
                    entry.version
                )));
            }
            last = entry.version;
            let key = (entry.namespace.clone(), entry.key.clone());
            if !before.contains_key(&key) {
                let size = self.run(async |c| {
                    c.query_opt(
                        "SELECT octet_length(entry)::int8 FROM kv_current \
                         WHERE namespace = $1 AND key = $2",
                        &[&key.0, &key.1],
                    )
                    .await
                })?;
                before.insert(key.clone(), size.map(|row| row.get::<_, i64>(0) as u64));
            }
            let bytes = encode(entry).len() as u64;
            let old = before.insert(key, Some(bytes)).flatten().unwrap_or(0);
            add_usage(&mut delta, &entry.namespace, bytes as i64 - old as i64);
        }
        // The newest entry of each key goes into the current state.
        let mut newest: HashMap<(&str, &str), &Entry> = HashMap::new();
        for entry in entries {
            newest.insert((&entry.namespace, &entry.key), entry);
        }
        let log_versions: Vec<i64> = entries.iter().map(|e| e.version as i64).collect();
        let log_entries: Vec<Vec<u8>> = entries.iter().map(encode).collect();
        let cur_namespaces: Vec<&str> = newest.keys().map(|(n, _)| *n).collect();
        let cur_keys: Vec<&str> = newest.keys().map(|(_, k)| *k).collect();
        let cur_versions: Vec<i64> = newest.values().map(|e| e.version as i64).collect();
        let cur_entries: Vec<Vec<u8>> = newest.values().map(|e| encode(*e)).collect();
        let out_writers: Vec<&str> = outcomes.iter().map(|(w, _, _)| w.as_str()).collect();
        let out_ids: Vec<i64> = outcomes.iter().map(|(_, id, _)| *id as i64).collect();
        let out_bytes: Vec<Vec<u8>> = outcomes.iter().map(|(_, _, o)| encode(o)).collect();
        let (tenants, deltas): (Vec<String>, Vec<i64>) = delta.into_iter().unzip();
        let version = last as i64;
        let notice = version.to_string();
        let log: [&(dyn ToSql + Sync); 2] = [&log_versions, &log_entries];
        let current: [&(dyn ToSql + Sync); 4] =
            [&cur_namespaces, &cur_keys, &cur_versions, &cur_entries];
        let recorded: [&(dyn ToSql + Sync); 4] = [&out_writers, &out_ids, &version, &out_bytes];
        let usage: [&(dyn ToSql + Sync); 2] = [&tenants, &deltas];
        let meta: [&(dyn ToSql + Sync); 1] = [&version];
        let notify: [&(dyn ToSql + Sync); 2] = [&CHANNEL, &notice];
        self.run(async |c| {
            // Sent together (the connection pipelines them, in order, in the one transaction),
            // then the commit.
            futures::try_join!(
                c.execute(
                    "INSERT INTO kv_log (version, entry) \
                     SELECT * FROM unnest($1::int8[], $2::bytea[])",
                    &log,
                ),
                c.execute(
                    "INSERT INTO kv_current (namespace, key, version, entry) \
                     SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::bytea[]) \
                     ON CONFLICT (namespace, key) DO UPDATE \
                     SET version = EXCLUDED.version, entry = EXCLUDED.entry",
                    &current,
                ),
                c.execute(
                    "INSERT INTO kv_outcomes (writer, id, version, outcome) \
                     SELECT w, i, $3, o FROM unnest($1::text[], $2::int8[], $4::bytea[]) \
                     AS t (w, i, o) ON CONFLICT DO NOTHING",
                    &recorded,
                ),
                c.execute(
                    "INSERT INTO kv_usage (tenant, bytes) \
                     SELECT * FROM unnest($1::text[], $2::int8[]) \
                     ON CONFLICT (tenant) DO UPDATE SET bytes = kv_usage.bytes + EXCLUDED.bytes",
                    &usage,
                ),
                c.execute("UPDATE kv_meta SET last_version = $1", &meta),
                c.execute("SELECT pg_notify($1, $2)", &notify),
            )?;
            c.batch_execute("COMMIT").await
        })?;
        self.last = last;
        Ok(())
    }

    fn log_after(&self, from: u64, max_bytes: usize) -> Result<Option<Vec<Entry>>, StorageError> {
        if from < self.compacted_through.get() {
            return Ok(None);
        }
        if from >= self.last {
            return Ok(Some(Vec::new()));
        }
        let through = self.last as i64;
        let (entries, _) = self.within_pages(max_bytes, |read| {
            self.query_entries(
                "SELECT entry FROM kv_log WHERE version > $1 AND version <= $2 \
                 ORDER BY version LIMIT $3",
                &[&(from as i64 + read), &through, &PAGE],
            )
        })?;
        // Another origin compacted past `from` since this one last looked.
        if entries.first().is_none_or(|e| e.version != from + 1) {
            return Ok(None);
        }
        Ok(Some(entries))
    }

    fn snapshot_after(
        &self,
        after: Option<&(String, String)>,
        max_bytes: usize,
    ) -> Result<(Vec<Entry>, bool), StorageError> {
        let (namespace, key, bounded) = after_key(after);
        self.within_pages(max_bytes, |read| {
            self.query_entries(
                "SELECT entry FROM kv_current WHERE NOT $3 OR (namespace, key) > ($1, $2) \
                 ORDER BY namespace, key OFFSET $4 LIMIT $5",
                &[&namespace, &key, &bounded, &read, &PAGE],
            )
        })
    }

    fn compact(&mut self, through: u64) -> Result<(), StorageError> {
        let through = through as i64;
        let compacted = self.run(async |c| {
            c.batch_execute("BEGIN").await?;
            c.execute("SELECT 1 FROM kv_meta FOR UPDATE", &[]).await?;
            c.execute("DELETE FROM kv_log WHERE version <= $1", &[&through])
                .await?;
            c.execute("DELETE FROM kv_outcomes WHERE version <= $1", &[&through])
                .await?;
            let row = c
                .query_one(
                    "UPDATE kv_meta SET compacted_through = greatest(compacted_through, $1) \
                     RETURNING compacted_through",
                    &[&through],
                )
                .await?;
            c.batch_execute("COMMIT").await?;
            Ok(row.get::<_, i64>(0) as u64)
        })?;
        self.compacted_through.set(compacted);
        Ok(())
    }

    fn compacted_through(&self) -> u64 {
        self.compacted_through.get()
    }

    fn used_bytes(&self, tenant: &str) -> Result<u64, StorageError> {
        if let Some(known) = self.round.as_ref().and_then(|r| r.usage.get(tenant)) {
            return Ok(*known);
        }
        let row = self.run(async |c| {
            c.query_opt(
                "SELECT greatest(bytes, 0) FROM kv_usage WHERE tenant = $1",
                &[&tenant],
            )
            .await
        })?;
        Ok(row.map_or(0, |row| row.get::<_, i64>(0) as u64))
    }

    fn reclaim(
        &mut self,
        after: Option<&(String, String)>,
        max_keys: usize,
        through: u64,
        now_ms: u64,
    ) -> Result<Sweep, StorageError> {
        let (namespace, key, bounded) = after_key(after);
        let limit = max_keys as i64;
        self.run(async |c| {
            // Under the version lock: a round that read one of these keys commits before
            // the sweep looks, or after it has gone.
            c.batch_execute("BEGIN").await?;
            c.execute("SELECT 1 FROM kv_meta FOR UPDATE", &[]).await?;
            let rows = c
                .query(
                    "SELECT namespace, key, entry FROM kv_current \
                     WHERE NOT $3 OR (namespace, key) > ($1, $2) \
                     ORDER BY namespace, key LIMIT $4",
                    &[&namespace, &key, &bounded, &limit],
                )
                .await?;
            let mut doomed: (Vec<String>, Vec<String>) = Default::default();
            let mut delta = HashMap::new();
            for row in &rows {
                let bytes = row.get::<_, &[u8]>(2);
                let Ok(info) = decode_key_info(bytes) else {
                    continue;
                };
                if reclaimable(&info, through, now_ms) {
                    let namespace: String = row.get(0);
                    add_usage(&mut delta, &namespace, -(bytes.len() as i64));
                    doomed.0.push(namespace);
                    doomed.1.push(row.get(1));
                }
            }
            c.execute(
                "DELETE FROM kv_current c USING unnest($1::text[], $2::text[]) AS d (namespace, key) \
                 WHERE c.namespace = d.namespace AND c.key = d.key",
                &[&doomed.0, &doomed.1],
            )
            .await?;
            let (tenants, deltas): (Vec<String>, Vec<i64>) = delta.into_iter().unzip();
            c.execute(
                "UPDATE kv_usage u SET bytes = u.bytes + d.delta \
                 FROM unnest($1::text[], $2::int8[]) AS d (tenant, delta) WHERE u.tenant = d.tenant",
                &[&tenants, &deltas],
            )
            .await?;
            c.batch_execute("COMMIT").await?;
            let next = (rows.len() == max_keys)
                .then(|| rows.last().map(|row| (row.get(0), row.get(1))))
                .flatten();
            Ok(Sweep {
                removed: doomed.0.len(),
                next,
            })
        })
    }

    fn list(
        &self,
        namespace: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        self.query_entries(LIST, &[&namespace, &prefix, &after, &(limit as i64)])
    }

    fn list_keys(
        &self,
        namespace: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<KeyInfo>, StorageError> {
        let rows = self.run(async |c| {
            c.query(LIST, &[&namespace, &prefix, &after, &(limit as i64)])
                .await
        })?;
        rows.iter()
            .map(|row| {
                decode_key_info(row.get::<_, &[u8]>(0))
                    .map_err(|e| StorageError::Failed(format!("corrupt entry: {e}")))
            })
            .collect()
    }
}

/// A namespace's entries whose keys start with $2, after $3 if given, in key order.
const LIST: &str = "SELECT entry FROM kv_current \
     WHERE namespace = $1 AND key >= $2 AND starts_with(key, $2) AND ($3::text IS NULL OR key > $3) \
     ORDER BY key LIMIT $4";
