//! Group commit of the datastore's checkpoint. The datastore persists through a
//! [`PendingSink`], which only records the newest document (under the datastore lock, no
//! I/O); one writer task writes the newest document with its fsyncs on a blocking thread and
//! publishes how far the file is durable. A gRPC handler answers only once the document
//! holding its change is durable ([`Checkpointer::durable`]), so the guarantee stays
//! upstream's (no reply before the checkpoint is on disk) while a burst of ADDs shares
//! fsyncs instead of queueing one per pod behind the datastore lock, and no runtime worker
//! ever blocks on the disk (docs/ipamd.md, "Checkpoint writes").

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use ipam::{Checkpoint, CheckpointError, CheckpointSink};
use tokio::sync::watch;

/// How far the file is written: the newest generation on disk, and the newest generation
/// whose write failed (with the error), if that is newer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    pub durable: u64,
    pub failed: Option<(u64, String)>,
}

struct Inner {
    /// The newest document not yet written, with its generation; and the newest generation.
    pending: Mutex<(Option<(u64, Checkpoint)>, u64)>,
    /// Signalled (with `pending`'s mutex) when a document is recorded or the writer stops.
    wake: Condvar,
    stop: AtomicBool,
    written: watch::Sender<Written>,
    sink: Mutex<Box<dyn CheckpointSink + Send>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The datastore's sink: records the document, wakes the writer, never fails.
pub struct PendingSink(Arc<Inner>);

impl CheckpointSink for PendingSink {
    fn persist(&mut self, doc: &Checkpoint) -> Result<(), CheckpointError> {
        let mut pending = lock(&self.0.pending);
        pending.1 += 1;
        pending.0 = Some((pending.1, doc.clone()));
        drop(pending);
        self.0.wake.notify_one();
        Ok(())
    }
}

/// The writer side, shared by the handlers that wait for durability.
#[derive(Clone)]
pub struct Checkpointer(Arc<Inner>);

impl Checkpointer {
    /// A checkpointer writing through `sink` (a `FileSink` in the agent), and the sink the
    /// datastore persists through.
    pub fn new(sink: Box<dyn CheckpointSink + Send>) -> (Self, PendingSink) {
        let inner = Arc::new(Inner {
            pending: Mutex::new((None, 0)),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            written: watch::Sender::new(Written::default()),
            sink: Mutex::new(sink),
        });
        (Self(inner.clone()), PendingSink(inner))
    }

    /// The generation of the newest document recorded (read it under the datastore lock,
    /// right after the change, to know what to wait for).
    pub fn generation(&self) -> u64 {
        lock(&self.0.pending).1
    }

    /// Writes the newest pending document now, on the calling thread (start-up, shutdown).
    pub fn write_now(&self) -> Result<(), CheckpointError> {
        // The sink lock first: two writers never reorder documents on disk.
        let mut sink = lock(&self.0.sink);
        let Some((generation, doc)) = lock(&self.0.pending).0.take() else {
            return Ok(());
        };
        let result = sink.persist(&doc);
        drop(sink);
        self.publish(
            generation,
            result.as_ref().map(|_| ()).map_err(|e| e.to_string()),
        );
        result
    }

    fn publish(&self, generation: u64, result: Result<(), String>) {
        self.0.written.send_modify(|w| match result {
            Ok(()) => w.durable = w.durable.max(generation),
            Err(e) => w.failed = Some((generation, e)),
        });
    }

    /// The writer: a thread of its own (no runtime worker is ever needed to start a write)
    /// that writes the newest pending document until the returned guard is dropped.
    pub fn spawn_writer(&self) -> WriterGuard {
        let this = self.clone();
        let spawned = std::thread::Builder::new()
            .name("checkpoint-writer".into())
            .spawn(move || this.writer_loop());
        if let Err(e) = spawned {
            tracing::error!("starting the checkpoint writer: {e}");
        }
        WriterGuard(self.clone())
    }

    fn writer_loop(&self) {
        // However the thread ends (stopped, or a panic), nobody waits for it forever.
        struct Stopped<'a>(&'a Checkpointer);
        impl Drop for Stopped<'_> {
            fn drop(&mut self) {
                let why = "the checkpoint writer stopped".to_owned();
                self.0
                    .0
                    .written
                    .send_modify(|w| w.failed = Some((u64::MAX, why)));
            }
        }
        let _stopped = Stopped(self);
        loop {
            {
                let mut pending = lock(&self.0.pending);
                while pending.0.is_none() && !self.0.stop.load(Ordering::Acquire) {
                    pending = self.0.wake.wait(pending).unwrap_or_else(|p| p.into_inner());
                }
            }
            if self.0.stop.load(Ordering::Acquire) {
                return;
            }
            if let Err(e) = self.write_now() {
                tracing::error!("writing the checkpoint: {e}");
            }
        }
    }

    /// Waits until the document of `generation` (or a newer one) is on disk; the error of
    /// the write that covered it when that failed.
    pub async fn durable(&self, generation: u64) -> Result<(), String> {
        let mut rx = self.0.written.subscribe();
        let outcome = rx
            .wait_for(|w| {
                w.durable >= generation || w.failed.as_ref().is_some_and(|f| f.0 >= generation)
            })
            .await
            .map(|w| w.clone());
        match outcome {
            Ok(w) if w.durable >= generation => Ok(()),
            Ok(w) => Err(w.failed.map(|f| f.1).unwrap_or_default()),
            Err(_) => Err("the checkpoint writer stopped".to_owned()),
        }
    }
}

/// Stops the writer thread when dropped (pending documents stay for [`Checkpointer::write_now`]).
pub struct WriterGuard(Checkpointer);

impl Drop for WriterGuard {
    fn drop(&mut self) {
        self.0.0.stop.store(true, Ordering::Release);
        let _pending = lock(&self.0.0.pending);
        self.0.0.wake.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipam::MemorySink;

    fn doc(n: usize) -> Checkpoint {
        Checkpoint {
            version: format!("v{n}"),
            ..Checkpoint::default()
        }
    }

    #[tokio::test]
    async fn a_burst_shares_writes_and_every_waiter_sees_its_document_on_disk() {
        let memory = MemorySink::new();
        let (cp, mut sink) = Checkpointer::new(Box::new(memory.clone()));
        let writer = cp.spawn_writer();
        let mut waits = Vec::new();
        for n in 1..=50 {
            sink.persist(&doc(n)).unwrap();
            let (cp, generation) = (cp.clone(), cp.generation());
            waits.push(tokio::spawn(async move { cp.durable(generation).await }));
        }
        for w in waits {
            assert_eq!(w.await.unwrap(), Ok(()));
        }
        assert_eq!(
            memory.last().unwrap().version,
            "v50",
            "the newest document won"
        );
        assert!(memory.writes() <= 50, "never more writes than changes");
        drop(writer);
    }

    #[tokio::test]
    async fn waiters_fail_instead_of_hanging_once_the_writer_stopped() {
        let (cp, mut sink) = Checkpointer::new(Box::new(MemorySink::new()));
        drop(cp.spawn_writer());
        sink.persist(&doc(1)).unwrap();
        let waited = tokio::time::timeout(std::time::Duration::from_secs(5), cp.durable(1));
        assert!(waited.await.expect("no hang").is_err());
    }

    #[tokio::test]
    async fn a_failed_write_fails_its_waiters_and_a_later_write_heals() {
        let memory = MemorySink::new();
        let (cp, mut sink) = Checkpointer::new(Box::new(memory.clone()));
        memory.set_failing(true);
        sink.persist(&doc(1)).unwrap();
        assert!(cp.write_now().is_err());
        assert!(cp.durable(1).await.is_err(), "the change is not on disk");
        memory.set_failing(false);
        sink.persist(&doc(2)).unwrap();
        cp.write_now().unwrap();
        assert_eq!(cp.durable(2).await, Ok(()));
        assert_eq!(memory.last().unwrap().version, "v2");
    }
}
