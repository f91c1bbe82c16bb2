//! A log writer for the request path: each thread appends its lines to a
//! buffer of its own (a lock no other thread takes between flushes: workers
//! never share a cache line per request), and the buffers are written out in
//! batches, from the logging thread itself when its buffer fills and at least
//! every [`FLUSH_EVERY`] from a background thread. A line is never split
//! across two writes; one thread's lines keep their order (lines of different
//! threads within one batch follow each other by thread, their timestamps
//! tell the order).

use std::cell::RefCell;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The longest a line waits in the buffer.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// Buffered bytes that trigger a write from the logging thread itself.
const HIGH_WATER: usize = 64 * 1024;

/// One thread's lines not yet written.
type Buffer = Arc<Mutex<Vec<u8>>>;

struct Shared<W> {
    /// Tells writers apart in the threads' lists of buffers.
    id: u64,
    /// Every buffer a thread made for this writer.
    buffers: Mutex<Vec<Buffer>>,
    out: Mutex<W>,
}

static WRITER_IDS: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This thread's buffers, by writer id.
    static MINE: RefCell<Vec<(u64, Buffer)>> = const { RefCell::new(Vec::new()) };
}

/// A cloneable handle; each `make_writer` call yields a line writer.
pub struct BatchWriter<W: Write + Send + 'static> {
    shared: Arc<Shared<W>>,
}

impl<W: Write + Send + 'static> Clone for BatchWriter<W> {
    fn clone(&self) -> Self {
        BatchWriter {
            shared: self.shared.clone(),
        }
    }
}

/// Flushes what is buffered when dropped (keep it alive until exit).
pub struct FlushGuard<W: Write + Send + 'static> {
    writer: BatchWriter<W>,
}

impl<W: Write + Send + 'static> BatchWriter<W> {
    /// Wraps `out` and starts the periodic flusher thread.
    pub fn new(out: W) -> (BatchWriter<W>, FlushGuard<W>) {
        let writer = BatchWriter {
            shared: Arc::new(Shared {
                id: WRITER_IDS.fetch_add(1, Ordering::Relaxed),
                buffers: Mutex::new(Vec::new()),
                out: Mutex::new(out),
            }),
        };
        let weak = Arc::downgrade(&writer.shared);
        let spawned = std::thread::Builder::new()
            .name("portcullis-log".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(FLUSH_EVERY);
                    let Some(shared) = weak.upgrade() else { return };
                    flush_all(&shared);
                }
            });
        if spawned.is_err() {
            eprintln!("portcullis: cannot start the log flusher; logs are written per line");
        }
        (writer.clone(), FlushGuard { writer })
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves at worst a partial batch: keep logging.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Writes `bytes` out. Logging must never take the gateway down: a failed
/// write drops them.
fn write_out<W: Write>(shared: &Shared<W>, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    let mut out = lock(&shared.out);
    let _ = out.write_all(bytes).and_then(|_| out.flush());
}

/// Writes every thread's buffered lines in one batch; forgets the buffers of
/// threads that ended. The output stays locked from the first line taken to
/// the write: a thread whose full buffer it writes itself meanwhile (newer
/// lines) waits, so one thread's lines never overtake each other.
fn flush_all<W: Write>(shared: &Shared<W>) {
    let mut out = lock(&shared.out);
    let mut batch = Vec::new();
    lock(&shared.buffers).retain(|buffer| {
        let mut lines = lock(buffer);
        batch.extend_from_slice(&lines);
        lines.clear();
        // Held only here: its thread is gone and wrote its last line.
        Arc::strong_count(buffer) > 1
    });
    if !batch.is_empty() {
        let _ = out.write_all(&batch).and_then(|_| out.flush());
    }
}

/// Writes one formatted event.
pub struct LineWriter<'a, W: Write + Send + 'static> {
    shared: &'a Shared<W>,
}

impl<W: Write + Send + 'static> LineWriter<'_, W> {
    /// This thread's buffer for this writer, made on its first line; `None`
    /// while the thread is being torn down.
    fn buffer(&self) -> Option<Buffer> {
        MINE.try_with(|mine| {
            let mut mine = mine.try_borrow_mut().ok()?;
            if let Some((_, buffer)) = mine.iter().find(|(id, _)| *id == self.shared.id) {
                return Some(buffer.clone());
            }
            let buffer = Buffer::default();
            lock(&self.shared.buffers).push(buffer.clone());
            mine.push((self.shared.id, buffer.clone()));
            Some(buffer)
        })
        .ok()
        .flatten()
    }
}

impl<W: Write + Send + 'static> Write for LineWriter<'_, W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let Some(buffer) = self.buffer() else {
            write_out(self.shared, data);
            return Ok(data.len());
        };
        let full = {
            let mut lines = lock(&buffer);
            lines.extend_from_slice(data);
            // A fresh buffer with room for a batch: no regrowth line by line.
            (lines.len() >= HIGH_WATER)
                .then(|| std::mem::replace(&mut *lines, Vec::with_capacity(2 * HIGH_WATER)))
        };
        // Written with the buffer unlocked (the flusher takes the output
        // first, then the buffers).
        if let Some(full) = full {
            write_out(self.shared, &full);
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a, W: Write + Send + 'static> tracing_subscriber::fmt::MakeWriter<'a> for BatchWriter<W> {
    type Writer = LineWriter<'a, W>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            shared: &self.shared,
        }
    }
}

impl<W: Write + Send + 'static> Drop for FlushGuard<W> {
    fn drop(&mut self) {
        flush_all(&self.writer.shared);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Sink {
        fn write(&mut self, d: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().push(d.to_vec());
            Ok(d.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_are_batched_and_flushed_on_drop() {
        use tracing_subscriber::fmt::MakeWriter;
        let sink = Sink::default();
        let (w, guard) = BatchWriter::new(sink.clone());
        for i in 0..10 {
            w.make_writer()
                .write_all(format!("line {i}\n").as_bytes())
                .unwrap();
        }
        assert!(
            sink.0.lock().unwrap().is_empty(),
            "nothing is written per line"
        );
        drop(guard);
        let writes = sink.0.lock().unwrap();
        assert_eq!(writes.len(), 1);
        assert!(String::from_utf8_lossy(&writes[0]).ends_with("line 9\n"));
    }

    #[test]
    fn each_thread_buffers_its_own_lines_and_none_is_lost() {
        use tracing_subscriber::fmt::MakeWriter;
        let sink = Sink::default();
        let (w, guard) = BatchWriter::new(sink.clone());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for i in 0..2_000 {
                        w.make_writer()
                            .write_all(format!("thread {t} line {i}\n").as_bytes())
                            .unwrap();
                    }
                })
            })
            .collect();
        // Joined: ended, thread-locals dropped (a scoped thread's may not be yet).
        for t in threads {
            t.join().unwrap();
        }
        // The threads ended: their buffers are written and then forgotten.
        drop(guard);
        let all: Vec<u8> = sink.0.lock().unwrap().concat();
        let text = String::from_utf8(all).unwrap();
        for t in 0..4 {
            let mine: Vec<usize> = text
                .lines()
                .filter_map(|l| l.strip_prefix(&format!("thread {t} line ")))
                .map(|n| n.parse().unwrap())
                .collect();
            assert_eq!(
                mine,
                (0..2_000).collect::<Vec<_>>(),
                "thread {t}: every line, in order"
            );
        }
        assert_eq!(
            w.shared.buffers.lock().unwrap().len(),
            0,
            "ended threads' buffers are dropped"
        );
    }

    #[test]
    fn a_full_buffer_is_written_by_the_caller() {
        use tracing_subscriber::fmt::MakeWriter;
        let sink = Sink::default();
        let (w, _guard) = BatchWriter::new(sink.clone());
        let line = vec![b'x'; 1024];
        for _ in 0..(HIGH_WATER / 1024) {
            w.make_writer().write_all(&line).unwrap();
        }
        assert!(!sink.0.lock().unwrap().is_empty());
    }
}
