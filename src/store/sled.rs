//! The sled backend (`sled://PATH`), with the same semantics as SQLite.
//!
//! Four trees: `log` maps a revision to the row written at it; `keys` maps `key NUL
//! revision` to nothing, so the revisions of a key sort together; `expiry` maps `expiry-time
//! revision` to the key, for keys with a time to live; `meta` holds the compaction point.
//! A batch of writes is one multi-tree transaction followed by a flush (fsync). If a flush
//! fails, sled cannot take the batch back, so the backend refuses every later write.

use std::path::Path;

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use sled::{Db, Tree};

use super::local::{Engine, LocalBackend, Opened, Range, Reader, Row};
use super::{Result, Revision, StoreError};

const NAME: &str = "sled";
/// sled's page cache; its default (1 GB) is far too much for an edge device.
const CACHE_BYTES: u64 = 64 << 20;

/// The sled backend.
pub(crate) type SledBackend = LocalBackend<SledReader>;

/// Opens (creating if needed) the database directory at `path`.
pub(crate) async fn open(path: &Path) -> Result<SledBackend> {
    let path = path.to_path_buf();
    let opened = tokio::task::spawn_blocking(move || open_blocking(&path))
        .await
        .map_err(|e| StoreError::backend(NAME, e))??;
    LocalBackend::start(NAME, opened)
}

#[derive(Clone)]
struct Trees {
    db: Db,
    log: Tree,
    keys: Tree,
    expiry: Tree,
    meta: Tree,
}

fn open_blocking(path: &Path) -> Result<Opened<SledEngine, SledReader>> {
    let open_err = |message: String| StoreError::Open {
        backend: NAME,
        path: path.display().to_string(),
        message,
    };
    let db = sled::Config::new()
        .path(path)
        .cache_capacity(CACHE_BYTES)
        .flush_every_ms(None)
        .open()
        .map_err(|e| {
            open_err(match e {
                sled::Error::Io(io)
                    if io.kind() == std::io::ErrorKind::WouldBlock
                        || io.to_string().contains("could not acquire lock") =>
                {
                    "the database is in use by another process".into()
                }
                sled::Error::Corruption { .. } => format!("the database is corrupt ({e})"),
                other => other.to_string(),
            })
        })?;
    let tree = |name: &str| db.open_tree(name).map_err(|e| open_err(e.to_string()));
    let trees = Trees {
        log: tree("log")?,
        keys: tree("keys")?,
        expiry: tree("expiry")?,
        meta: tree("meta")?,
        db: db.clone(),
    };
    let current = match trees.log.last().map_err(|e| open_err(e.to_string()))? {
        Some((k, _)) => decode_rev(&k)?,
        None => 1,
    };
    let compacted = match trees
        .meta
        .get("compacted")
        .map_err(|e| open_err(e.to_string()))?
    {
        Some(v) => decode_rev(&v)?,
        None => 0,
    };
    Ok(Opened {
        engine: SledEngine {
            trees: trees.clone(),
            poisoned: None,
        },
        reader: SledReader { trees },
        current: current.max(1),
        compacted,
    })
}

fn db_err(err: impl std::fmt::Display) -> StoreError {
    StoreError::backend(NAME, err)
}

fn rev_bytes(rev: Revision) -> [u8; 8] {
    (rev as u64).to_be_bytes()
}

fn decode_rev(bytes: &[u8]) -> Result<Revision> {
    let arr: [u8; 8] = bytes
        .get(bytes.len().saturating_sub(8)..)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| db_err("a stored revision is malformed"))?;
    Ok(u64::from_be_bytes(arr) as Revision)
}

/// `key NUL revision`: the revisions of a key sort together, in order.
fn key_entry(key: &[u8], rev: Revision) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 9);
    out.extend_from_slice(key);
    out.push(0);
    out.extend_from_slice(&rev_bytes(rev));
    out
}

fn expiry_entry(expires_at: i64, rev: Revision) -> [u8; 16] {
    let mut out = [0; 16];
    out[..8].copy_from_slice(&(expires_at as u64).to_be_bytes());
    out[8..].copy_from_slice(&rev_bytes(rev));
    out
}

fn encode_row(row: &Row) -> Vec<u8> {
    let mut out = Vec::with_capacity(33 + row.key.len() + row.value.len());
    out.extend_from_slice(&rev_bytes(row.create_revision));
    out.extend_from_slice(&rev_bytes(row.prev_revision));
    out.extend_from_slice(&(row.expires_at as u64).to_be_bytes());
    out.push(u8::from(row.deleted));
    out.extend_from_slice(&(row.key.len() as u32).to_be_bytes());
    out.extend_from_slice(row.key.as_bytes());
    out.extend_from_slice(&row.value);
    out
}

fn decode_row(revision: Revision, bytes: &[u8]) -> Result<Row> {
    let bad = || db_err(format!("the row at revision {revision} is malformed"));
    let int = |at: usize| -> Result<u64> {
        let b: [u8; 8] = bytes
            .get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(bad)?;
        Ok(u64::from_be_bytes(b))
    };
    let key_len = bytes
        .get(25..29)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_be_bytes)
        .ok_or_else(bad)? as usize;
    let key = bytes.get(29..29 + key_len).ok_or_else(bad)?;
    Ok(Row {
        revision,
        key: String::from_utf8(key.to_vec()).map_err(|_| bad())?,
        create_revision: int(0)? as Revision,
        prev_revision: int(8)? as Revision,
        expires_at: int(16)? as i64,
        deleted: *bytes.get(24).ok_or_else(bad)? != 0,
        value: bytes[29 + key_len..].to_vec(),
    })
}

impl Trees {
    fn row(&self, rev: Revision) -> Result<Option<Row>> {
        match self.log.get(rev_bytes(rev)).map_err(db_err)? {
            Some(bytes) => decode_row(rev, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// The key's latest revision at or below `upto`.
    fn latest_rev(&self, key: &[u8], upto: Revision) -> Result<Option<Revision>> {
        let from = key_entry(key, 0);
        let to = key_entry(key, upto.saturating_add(1));
        match self.keys.range(from..to).next_back() {
            Some(entry) => decode_rev(&entry.map_err(db_err)?.0).map(Some),
            None => Ok(None),
        }
    }

    /// Calls `f` with the latest revision at or below `at` of each key in `range`, in key
    /// order, until it returns false.
    fn each_latest(
        &self,
        range: &Range,
        at: Revision,
        mut f: impl FnMut(Revision) -> Result<bool>,
    ) -> Result<()> {
        // Keys hold no NUL, so a start key `K NUL…` (the page after K) means "after every
        // entry of K": `K 0x01` in the `key NUL revision` space.
        let start = match range.start.iter().position(|&b| b == 0) {
            Some(nul) => [&range.start[..nul], &[1u8][..]].concat(),
            None => range.start.clone(),
        };
        let iter = match &range.end {
            Some(end) => self.keys.range(start..end.clone()),
            None => self.keys.range(start..),
        };
        let mut current: Option<(Vec<u8>, Option<Revision>)> = None;
        for entry in iter {
            let (k, _) = entry.map_err(db_err)?;
            let (key, rev) = k.split_at(k.len().saturating_sub(9));
            let rev = decode_rev(rev)?;
            match &mut current {
                Some((ck, best)) if ck.as_slice() == key => {
                    if rev <= at {
                        *best = Some(rev);
                    }
                }
                _ => {
                    if let Some((_, Some(best))) = current.take() {
                        if !f(best)? {
                            return Ok(());
                        }
                    }
                    current = Some((key.to_vec(), (rev <= at).then_some(rev)));
                }
            }
        }
        if let Some((_, Some(best))) = current {
            f(best)?;
        }
        Ok(())
    }
}

/// The writer's handle.
pub struct SledEngine {
    trees: Trees,
    /// Set when a flush failed: what sled holds in memory may then never reach the disk.
    poisoned: Option<String>,
}

impl SledEngine {
    fn flush(&mut self) -> Result<()> {
        self.trees.db.flush().map(|_| ()).map_err(|e| {
            let message = format!("flush failed, refusing further writes until restart: {e}");
            self.poisoned = Some(message.clone());
            db_err(message)
        })
    }

    fn check_poisoned(&self) -> Result<()> {
        match &self.poisoned {
            Some(message) => Err(db_err(message)),
            None => Ok(()),
        }
    }
}

impl Engine for SledEngine {
    const NAME: &'static str = NAME;

    fn latest(&mut self, key: &str) -> Result<Option<Row>> {
        // After a failed flush, what sled holds in memory is not what was acknowledged.
        self.check_poisoned()?;
        match self.trees.latest_rev(key.as_bytes(), Revision::MAX - 1)? {
            Some(rev) => self.trees.row(rev),
            None => Ok(None),
        }
    }

    fn commit(&mut self, rows: &[Row]) -> Result<()> {
        self.check_poisoned()?;
        let t = &self.trees;
        (&t.log, &t.keys, &t.expiry)
            .transaction(|(log, keys, expiry)| {
                for row in rows {
                    log.insert(&rev_bytes(row.revision), encode_row(row))?;
                    keys.insert(key_entry(row.key.as_bytes(), row.revision), &[][..])?;
                    if row.expires_at > 0 {
                        expiry.insert(
                            &expiry_entry(row.expires_at, row.revision),
                            row.key.as_bytes(),
                        )?;
                    }
                }
                Ok::<_, ConflictableTransactionError<()>>(())
            })
            .map_err(|e: TransactionError<()>| db_err(format!("{e:?}")))?;
        self.flush()
    }

    fn set_compacted(&mut self, revision: Revision) -> Result<()> {
        self.check_poisoned()?;
        self.trees
            .meta
            .insert("compacted", &rev_bytes(revision))
            .map_err(db_err)?;
        self.flush()
    }

    fn compact_chunk(&mut self, from: Revision, to: Revision, target: Revision) -> Result<()> {
        self.check_poisoned()?;
        let t = &self.trees;
        for entry in t.log.range(rev_bytes(from)..rev_bytes(to.min(target))) {
            let (k, v) = entry.map_err(db_err)?;
            let row = decode_row(decode_rev(&k)?, &v)?;
            let superseded = row.deleted
                || t.latest_rev(row.key.as_bytes(), target)?
                    .is_some_and(|r| r > row.revision);
            if !superseded {
                continue;
            }
            t.keys
                .remove(key_entry(row.key.as_bytes(), row.revision))
                .map_err(db_err)?;
            t.log.remove(k).map_err(db_err)?;
            if row.expires_at > 0 {
                t.expiry
                    .remove(expiry_entry(row.expires_at, row.revision))
                    .map_err(db_err)?;
            }
        }
        self.flush()
    }

    fn first_revision(&mut self) -> Result<Option<Revision>> {
        match self.trees.log.first().map_err(db_err)? {
            Some((k, _)) => decode_rev(&k).map(Some),
            None => Ok(None),
        }
    }
}

/// Read access: sled trees are safe to read from many threads.
pub struct SledReader {
    trees: Trees,
}

impl Reader for SledReader {
    fn get(&self, key: &str, revision: Revision) -> Result<Option<Row>> {
        match self.trees.latest_rev(key.as_bytes(), revision)? {
            Some(rev) => self.trees.row(rev),
            None => Ok(None),
        }
    }

    fn list(&self, range: &Range, revision: Revision, limit: usize) -> Result<Vec<Row>> {
        let mut out = Vec::new();
        self.trees.each_latest(range, revision, |rev| {
            if let Some(row) = self.trees.row(rev)?.filter(|r| !r.deleted) {
                out.push(row);
            }
            Ok(limit == 0 || out.len() < limit)
        })?;
        Ok(out)
    }

    fn count(&self, range: &Range, revision: Revision) -> Result<u64> {
        let mut n = 0;
        self.trees.each_latest(range, revision, |rev| {
            if self.trees.row(rev)?.is_some_and(|r| !r.deleted) {
                n += 1;
            }
            Ok(true)
        })?;
        Ok(n)
    }

    fn history(
        &self,
        range: &Range,
        from: Revision,
        upto: Revision,
        limit: usize,
    ) -> Result<Vec<(Row, Option<Row>)>> {
        let mut out = Vec::new();
        for entry in self.trees.log.range(rev_bytes(from)..=rev_bytes(upto)) {
            let (k, v) = entry.map_err(db_err)?;
            let row = decode_row(decode_rev(&k)?, &v)?;
            if !range.contains(row.key.as_bytes()) {
                continue;
            }
            let prev = match row.prev_revision {
                0 => None,
                prev => self.trees.row(prev)?,
            };
            out.push((row, prev));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    fn expired(&self, now_ms: i64, upto: Revision) -> Result<Vec<(String, Revision)>> {
        let mut out = Vec::new();
        let end = expiry_entry(now_ms.saturating_add(1), 0);
        for entry in self.trees.expiry.range(..end) {
            let (k, key) = entry.map_err(db_err)?;
            let rev = decode_rev(&k)?;
            if rev > upto || self.trees.latest_rev(&key, upto)? != Some(rev) {
                continue;
            }
            if let Some(row) = self.trees.row(rev)?.filter(|r| !r.deleted) {
                out.push((row.key, rev));
            }
        }
        Ok(out)
    }

    fn size(&self) -> Result<u64> {
        self.trees.db.size_on_disk().map_err(db_err)
    }
}
