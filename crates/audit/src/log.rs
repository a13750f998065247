//! The appending side: one writer task per node, group-committing entries in chain order.

use std::time::Duration;

use ed25519_dalek::{Signer, SigningKey};
use sqlx::{Any, Transaction};
use tokio::sync::{mpsc, oneshot};

use crate::db::{Backend, Database, Step, now_us};
use crate::entry::{Entry, Record, checkpoint_message};
use crate::{AuditError, read};

/// How many queued entries one transaction takes at most.
const MAX_BATCH: usize = 512;

/// Tuning for an [`AuditLog`].
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// Sign a checkpoint after this many entries.
    pub checkpoint_every: i64,
    /// …and at least this often while entries keep arriving.
    pub checkpoint_interval: Duration,
}

impl Default for AuditOptions {
    fn default() -> Self {
        Self {
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(60),
        }
    }
}

/// Where an appended entry landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Its position in the chain.
    pub seq: i64,
    /// Its hash.
    pub hash: String,
}

/// An entry queued by [`AuditLog::enqueue`], not yet known to be committed.
#[derive(Debug)]
pub struct Pending(oneshot::Receiver<Result<Receipt, AuditError>>);

impl Pending {
    /// Waits until the entry is committed.
    pub async fn committed(self) -> Result<Receipt, AuditError> {
        self.0.await.map_err(|_| AuditError::Closed)?
    }
}

enum Command {
    Append(Box<Entry>, oneshot::Sender<Result<Receipt, AuditError>>),
    Checkpoint(oneshot::Sender<Result<Option<i64>, AuditError>>),
}

/// A node's audit trail. Cloning is cheap; all clones feed one writer, so the chain has one order.
///
/// [`append`](Self::append) returns once the entry is committed: callers audit *before* they
/// release anything, so a result never leaves without its entry.
///
/// ```no_run
/// # async fn f() -> Result<(), medfed_audit::AuditError> {
/// use medfed_audit::{AuditLog, AuditOptions, Decision, Entry};
/// let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
/// let log = AuditLog::open("audit.db", key, AuditOptions::default()).await?;
/// let receipt = log
///     .append(Entry::new("alice", "researcher", "query", Decision::Allow, "released 12 rows").study("s1"))
///     .await?;
/// assert!(receipt.seq >= 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Command>,
    db: Database,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("backend", &self.db.backend)
            .finish()
    }
}

impl AuditLog {
    /// Opens (creating and migrating if needed) the trail at `url_or_path`, signing checkpoints
    /// with `key`.
    pub async fn open(
        url_or_path: &str,
        key: SigningKey,
        options: AuditOptions,
    ) -> Result<Self, AuditError> {
        let db = Database::connect(url_or_path, 4).await?;
        Self::with_database(db, key, options).await
    }

    /// As [`open`](Self::open), on an existing pool.
    pub async fn with_database(
        db: Database,
        key: SigningKey,
        options: AuditOptions,
    ) -> Result<Self, AuditError> {
        migrate(&db).await?;
        let head = read::head(&db).await?;
        let (tx, rx) = mpsc::channel(4096);
        let writer = Writer {
            db: db.clone(),
            key,
            options,
            head,
            since_checkpoint: 0,
        };
        tokio::spawn(writer.run(rx));
        Ok(Self { tx, db })
    }

    /// Appends `entry`, returning once it is committed.
    pub async fn append(&self, entry: Entry) -> Result<Receipt, AuditError> {
        self.enqueue(entry).await?.committed().await
    }

    /// Queues `entry` and returns as soon as it is in the writer's queue, with a handle that
    /// says when it is committed. Entries queued one after another keep that order in the chain.
    ///
    /// For releases that must not wait for the disk — a clinical alert goes out at once — where
    /// the caller instead holds back acknowledging its input until every receipt is in, and
    /// on a restart audits what went out without its entry.
    pub async fn enqueue(&self, entry: Entry) -> Result<Pending, AuditError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Command::Append(Box::new(entry), done))
            .await
            .map_err(|_| AuditError::Closed)?;
        Ok(Pending(wait))
    }

    /// Signs a checkpoint at the current head now (if anything was appended since the last one);
    /// returns its sequence number.
    pub async fn checkpoint(&self) -> Result<Option<i64>, AuditError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Command::Checkpoint(done))
            .await
            .map_err(|_| AuditError::Closed)?;
        wait.await.map_err(|_| AuditError::Closed)?
    }

    /// Records with `seq > after`, oldest first, at most `limit`.
    pub async fn records(&self, after: i64, limit: i64) -> Result<Vec<Record>, AuditError> {
        read::records(&self.db, after, limit).await
    }

    /// The sequence number of the last committed entry (0 for an empty trail): a position to
    /// read on from with [`records`](Self::records).
    pub async fn head(&self) -> Result<i64, AuditError> {
        Ok(read::head(&self.db).await?.0)
    }

    /// The database the trail lives in.
    pub fn database(&self) -> &Database {
        &self.db
    }
}

/// Creates the trail's tables (idempotent).
pub async fn migrate(db: &Database) -> Result<(), AuditError> {
    const TABLES: Step = (
        1,
        "audit log",
        include_str!("../migrations/0001_audit_log.sql"),
    );
    let steps = match db.backend {
        Backend::Sqlite => [
            TABLES,
            (
                2,
                "append only",
                include_str!("../migrations/0002_append_only.sqlite.sql"),
            ),
        ],
        Backend::Postgres => [
            TABLES,
            (
                2,
                "append only",
                include_str!("../migrations/0002_append_only.postgres.sql"),
            ),
        ],
    };
    db.migrate(&steps, "_medfed_audit_migrations").await?;
    Ok(())
}

struct Writer {
    db: Database,
    key: SigningKey,
    options: AuditOptions,
    /// (seq, hash) of the last committed record.
    head: (i64, String),
    since_checkpoint: i64,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let period = self.options.checkpoint_interval;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let first = tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(cmd) => cmd,
                    None => break,
                },
                _ = tick.tick() => {
                    if self.since_checkpoint > 0
                        && let Err(e) = self.checkpoint_now().await
                    {
                        tracing::error!(error = %e, "audit checkpoint failed");
                    }
                    continue;
                }
            };
            let mut appends = Vec::new();
            let mut checkpoints = Vec::new();
            let mut next = Some(first);
            while let Some(cmd) = next.take() {
                match cmd {
                    Command::Append(entry, done) => appends.push((*entry, done)),
                    Command::Checkpoint(done) => checkpoints.push(done),
                }
                if appends.len() < MAX_BATCH {
                    next = rx.try_recv().ok();
                }
            }
            if !appends.is_empty() {
                self.commit_batch(appends).await;
            }
            for done in checkpoints {
                let _ = done.send(self.checkpoint_now().await);
            }
        }
        // Shutting down: seal what was written so far.
        if self.since_checkpoint > 0 {
            let _ = self.checkpoint_now().await;
        }
    }

    async fn commit_batch(
        &mut self,
        appends: Vec<(Entry, oneshot::Sender<Result<Receipt, AuditError>>)>,
    ) {
        let (start, start_since) = (self.head.clone(), self.since_checkpoint);
        let mut receipts = Vec::with_capacity(appends.len());
        let result: Result<(), AuditError> = async {
            let mut tx = self.db.pool.begin().await?;
            self.head = lock_head(self.db.backend, &mut tx).await?;
            for (entry, _) in &appends {
                let at = now_us();
                let record = Record::seal(self.head.0 + 1, at, entry.clone(), self.head.1.clone());
                insert_record(&mut tx, &record).await?;
                self.head = (record.seq, record.hash.clone());
                receipts.push(Receipt {
                    seq: record.seq,
                    hash: record.hash,
                });
                self.since_checkpoint += 1;
                if self.since_checkpoint >= self.options.checkpoint_every {
                    self.insert_checkpoint(&mut tx).await?;
                }
            }
            tx.commit().await?;
            Ok(())
        }
        .await;
        match result {
            Ok(()) => {
                for ((_, done), receipt) in appends.into_iter().zip(receipts) {
                    let _ = done.send(Ok(receipt));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "audit append failed; entries not recorded");
                self.head = start;
                self.since_checkpoint = start_since;
                for (_, done) in appends {
                    let _ = done.send(Err(AuditError::Write(e.to_string())));
                }
            }
        }
    }

    async fn checkpoint_now(&mut self) -> Result<Option<i64>, AuditError> {
        if self.head.0 == 0 || self.since_checkpoint == 0 {
            return Ok(None);
        }
        let mut tx = self.db.pool.begin().await?;
        self.insert_checkpoint(&mut tx).await?;
        tx.commit().await?;
        Ok(Some(self.head.0))
    }

    /// Signs the head. Another writer on the trail may have signed the same entry already:
    /// that checkpoint stands.
    async fn insert_checkpoint(&mut self, tx: &mut Transaction<'_, Any>) -> Result<(), AuditError> {
        let (seq, hash) = &self.head;
        let at = now_us();
        let signature = self.key.sign(&checkpoint_message(*seq, hash, at));
        sqlx::query(
            "INSERT INTO audit_checkpoint (seq, hash, at_us, public_key, signature) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (seq) DO NOTHING",
        )
        .bind(*seq)
        .bind(hash.as_str())
        .bind(at)
        .bind(hex::encode(self.key.verifying_key().as_bytes()))
        .bind(hex::encode(signature.to_bytes()))
        .execute(&mut **tx)
        .await?;
        self.since_checkpoint = 0;
        Ok(())
    }
}

/// Takes the trail's write lock and reads its head inside `tx`. Another process may append to
/// the same trail (a site's vitals consumer beside its node): each batch chains onto the head
/// as committed, not as this writer last left it, so the chain stays one line.
async fn lock_head(
    backend: Backend,
    tx: &mut Transaction<'_, Any>,
) -> Result<(i64, String), AuditError> {
    let lock = match backend {
        // Any write statement takes SQLite's one write lock (waiting out busy_timeout), even
        // one that changes no row.
        Backend::Sqlite => "UPDATE _medfed_audit_migrations SET success = success WHERE 1 = 0",
        // Conflicts with itself and with every write, not with readers.
        Backend::Postgres => "LOCK TABLE audit_log IN SHARE ROW EXCLUSIVE MODE",
    };
    sqlx::query(lock).execute(&mut **tx).await?;
    read::head_in(&mut **tx).await
}

async fn insert_record(tx: &mut Transaction<'_, Any>, r: &Record) -> Result<(), sqlx::Error> {
    let sites = serde_json::to_string(&r.entry.sites).expect("strings serialise");
    sqlx::query(
        "INSERT INTO audit_log (seq, at_us, actor, role, action, study, sites, decision, reason, \
         result_digest, epsilon, request_id, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(r.seq)
    .bind(r.at_us)
    .bind(r.entry.actor.as_str())
    .bind(r.entry.role.as_str())
    .bind(r.entry.action.as_str())
    .bind(r.entry.study.as_deref())
    .bind(sites)
    .bind(r.entry.decision.as_str())
    .bind(r.entry.reason.as_str())
    .bind(r.entry.result_digest.as_deref())
    .bind(r.entry.epsilon)
    .bind(r.entry.request_id.as_deref())
    .bind(r.prev_hash.as_str())
    .bind(r.hash.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(())
}
