//! The on-disk spool: one file per batch, holding exactly the bytes the batch is sent as.
//!
//! An event is appended to the open batch's file (`<id>.open`) before `publish` returns;
//! sealing the batch syncs the file to disk and renames it `<id>.batch`; the gateway's
//! acknowledgement deletes it. At start every `.open` and `.batch` file is sent again, in
//! order, so delivery is at least once: a batch acknowledged just before a crash is sent
//! twice, and the gateway's event ids make the copy collapse downstream.
//!
//! A process kill loses nothing `publish` took (the bytes are in the kernel's page cache);
//! a power loss can lose events of the batch that was still open (not yet synced). A file
//! cut short by a crash ends in a partial event, which is dropped: `publish` had not
//! returned for it. A batch the gateway refuses for good is renamed `<id>.failed` and no
//! longer counts against the bound.

use std::{
    fs::{self, File, OpenOptions},
    io::Write as _,
    path::{Path, PathBuf},
};

use bytes::Bytes;

use crate::{batch::Batch, batch::whole_records, error::PublishError};

/// A batch found on disk at start.
pub(crate) struct Recovered {
    pub id: u64,
    pub batch: Batch,
}

/// The file being appended to.
struct OpenFile {
    id: u64,
    file: File,
    bytes: u64,
}

pub(crate) struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    /// Bytes of every `.open` and `.batch` file: what counts against `max_bytes`.
    used: u64,
    next_id: u64,
    open: Option<OpenFile>,
}

fn path(dir: &Path, id: u64, ext: &str) -> PathBuf {
    dir.join(format!("{id:020}.{ext}"))
}

impl Spool {
    /// Opens (creating) `dir`; returns the spool and the batches left by a previous run,
    /// oldest first, each already renamed `.batch`.
    pub fn open(dir: &Path, max_bytes: u64) -> std::io::Result<(Spool, Vec<Recovered>)> {
        fs::create_dir_all(dir)?;
        let mut found = Vec::new();
        let mut next_id = 0;
        for entry in fs::read_dir(dir)? {
            let name = entry?.file_name();
            let Some((stem, ext)) = name.to_str().and_then(|n| n.split_once('.')) else {
                continue;
            };
            let Ok(id) = stem.parse::<u64>() else {
                continue;
            };
            next_id = next_id.max(id + 1);
            if ext == "open" || ext == "batch" {
                found.push((id, ext.to_owned()));
            }
        }
        found.sort();
        let mut recovered = Vec::new();
        let mut used = 0;
        for (id, ext) in found {
            let from = path(dir, id, &ext);
            let bytes = fs::read(&from)?;
            let (whole, events) = whole_records(&bytes);
            if events == 0 {
                fs::remove_file(&from)?;
                continue;
            }
            if whole < bytes.len() {
                tracing::warn!(file = %from.display(), dropped_bytes = bytes.len() - whole, "spool file ends in a partial event; dropping it");
                OpenOptions::new()
                    .write(true)
                    .open(&from)?
                    .set_len(whole as u64)?;
            }
            let to = path(dir, id, "batch");
            if from != to {
                File::open(&from)?.sync_all()?;
                fs::rename(&from, &to)?;
            }
            used += whole as u64;
            let mut bytes = bytes;
            bytes.truncate(whole);
            recovered.push(Recovered {
                id,
                batch: Batch::from_encoded(Bytes::from(bytes), events),
            });
        }
        if !recovered.is_empty() {
            tracing::info!(batches = recovered.len(), bytes = used, dir = %dir.display(), "resending spooled batches");
        }
        Ok((
            Spool {
                dir: dir.to_owned(),
                max_bytes,
                used,
                next_id,
                open: None,
            },
            recovered,
        ))
    }

    /// Appends one framed event to the open batch's file.
    pub fn append(&mut self, framed: &[u8]) -> Result<(), PublishError> {
        if self.used + framed.len() as u64 > self.max_bytes {
            crate::metrics::spool_full();
            return Err(PublishError::SpoolFull {
                max_bytes: self.max_bytes,
            });
        }
        let open = match &mut self.open {
            Some(open) => open,
            None => {
                let id = self.next_id;
                let file = OpenOptions::new()
                    .create_new(true)
                    .append(true)
                    .open(path(&self.dir, id, "open"))?;
                self.next_id += 1;
                self.open.insert(OpenFile { id, file, bytes: 0 })
            }
        };
        if let Err(e) = open.file.write_all(framed) {
            // cut back to the last whole event, so later appends stay readable
            let _ = open.file.set_len(open.bytes);
            return Err(e.into());
        }
        open.bytes += framed.len() as u64;
        self.used += framed.len() as u64;
        crate::metrics::spooled(1);
        Ok(())
    }

    /// Syncs and closes the open batch's file; its id, if one was open.
    pub fn seal(&mut self) -> std::io::Result<Option<u64>> {
        let Some(open) = self.open.take() else {
            return Ok(None);
        };
        open.file.sync_data()?;
        fs::rename(
            path(&self.dir, open.id, "open"),
            path(&self.dir, open.id, "batch"),
        )?;
        Ok(Some(open.id))
    }

    /// The gateway acknowledged batch `id` of `bytes` bytes.
    pub fn delivered(&mut self, id: u64, bytes: u64) -> std::io::Result<()> {
        fs::remove_file(path(&self.dir, id, "batch"))?;
        self.used = self.used.saturating_sub(bytes);
        Ok(())
    }

    /// The gateway refused batch `id` for good: kept aside for a human, out of the bound.
    pub fn refused(&mut self, id: u64, bytes: u64) -> std::io::Result<()> {
        fs::rename(path(&self.dir, id, "batch"), path(&self.dir, id, "failed"))?;
        self.used = self.used.saturating_sub(bytes);
        Ok(())
    }

    /// Bytes counting against the bound.
    #[cfg(test)]
    pub fn used(&self) -> u64 {
        self.used
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline::proto::ingest::Event;

    fn framed(id: &str) -> Vec<u8> {
        let mut buf = Vec::new();
        crate::batch::frame(
            &Event {
                event_id: id.into(),
                ..Event::default()
            },
            &mut buf,
        );
        buf
    }

    #[test]
    fn batches_survive_a_restart_and_acknowledged_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, recovered) = Spool::open(dir.path(), 1 << 20).unwrap();
        assert!(recovered.is_empty());
        spool.append(&framed("a")).unwrap();
        spool.append(&framed("b")).unwrap();
        let first = spool.seal().unwrap().unwrap();
        spool.append(&framed("c")).unwrap();
        let second = spool.seal().unwrap().unwrap();
        spool.append(&framed("d")).unwrap();
        let len = framed("c").len() as u64;
        spool.delivered(second, len).unwrap();
        drop(spool); // as a killed process would: "d" is in an open file

        let (spool, recovered) = Spool::open(dir.path(), 1 << 20).unwrap();
        let ids: Vec<Vec<String>> = recovered
            .iter()
            .map(|r| {
                r.batch
                    .events()
                    .unwrap()
                    .into_iter()
                    .map(|e| e.event_id)
                    .collect()
            })
            .collect();
        assert_eq!(ids, vec![vec!["a", "b"], vec!["d"]]);
        assert_eq!(recovered[0].id, first);
        assert_eq!(spool.used(), 3 * len);
    }

    #[test]
    fn a_full_spool_refuses_and_a_torn_event_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let one = framed("a").len() as u64;
        let (mut spool, _) = Spool::open(dir.path(), 2 * one).unwrap();
        spool.append(&framed("a")).unwrap();
        spool.append(&framed("b")).unwrap();
        assert!(matches!(
            spool.append(&framed("c")),
            Err(PublishError::SpoolFull { .. })
        ));
        drop(spool);
        // a crash in the middle of writing a third event
        let file = fs::read_dir(dir.path()).unwrap().next().unwrap().unwrap();
        let mut f = OpenOptions::new().append(true).open(file.path()).unwrap();
        f.write_all(&framed("c")[..3]).unwrap();
        let (spool, recovered) = Spool::open(dir.path(), 2 * one).unwrap();
        assert_eq!(recovered.len(), 1);
        assert_eq!(recovered[0].batch.len(), 2);
        assert_eq!(spool.used(), 2 * one);
    }
}
