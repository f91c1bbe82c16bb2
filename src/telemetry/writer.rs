//! A log writer for the request path: lines are appended to one shared buffer
//! (a short lock, no cross-thread wake-up per line) and written out in batches,
//! when the buffer fills and at least every [`FLUSH_EVERY`] from a background
//! thread. A line is never split across two writes.

use std::io::{self, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The longest a line waits in the buffer.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// Buffered bytes that trigger a write from the logging thread itself.
const HIGH_WATER: usize = 64 * 1024;

struct Shared<W> {
    buf: Vec<u8>,
    out: W,
}

/// A cloneable handle; each `make_writer` call yields a line writer.
pub struct BatchWriter<W: Write + Send + 'static> {
    shared: Arc<Mutex<Shared<W>>>,
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
            shared: Arc::new(Mutex::new(Shared {
                buf: Vec::with_capacity(HIGH_WATER * 2),
                out,
            })),
        };
        let weak = Arc::downgrade(&writer.shared);
        let spawned = std::thread::Builder::new()
            .name("portcullis-log".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(FLUSH_EVERY);
                    let Some(shared) = weak.upgrade() else { return };
                    flush(&mut lock(&shared));
                }
            });
        if spawned.is_err() {
            eprintln!("portcullis: cannot start the log flusher; logs are written per line");
        }
        (writer.clone(), FlushGuard { writer })
    }
}

fn lock<W>(m: &Mutex<Shared<W>>) -> MutexGuard<'_, Shared<W>> {
    // A panic while holding the lock leaves at worst a partial batch: keep logging.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn flush<W: Write>(s: &mut Shared<W>) {
    if s.buf.is_empty() {
        return;
    }
    let Shared { buf, out } = s;
    // Logging must never take the gateway down: a failed write drops the batch.
    let _ = out.write_all(buf).and_then(|_| out.flush());
    buf.clear();
}

/// Writes one formatted event.
pub struct LineWriter<'a, W: Write + Send + 'static> {
    shared: &'a Mutex<Shared<W>>,
}

impl<W: Write + Send + 'static> Write for LineWriter<'_, W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut s = lock(self.shared);
        s.buf.extend_from_slice(data);
        if s.buf.len() >= HIGH_WATER {
            flush(&mut s);
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
        flush(&mut lock(&self.writer.shared));
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
