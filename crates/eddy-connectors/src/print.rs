//! A sink that prints records to stdout, one line each: what job builders use for output `-`.
//!
//! At-least-once: lines are printed as they arrive, so records replayed after a failure are
//! printed again. Unlike Flink's print sink there is no `<subtask>>` prefix, so the output can
//! be piped and diffed as is. Each batch is formatted into one buffer and written with a single
//! locked write; this sink must never hold the stdout lock between calls.

use crate::file::sink::display_line;
use eddy_runtime::{Data, JobError, Result, Sink};
use std::fmt::Display;
use std::io::Write;
use std::marker::PhantomData;

/// Prints every record as a line on stdout.
pub struct PrintSink<T, F = fn(&T, &mut String)> {
    format: F,
    line: String,
    _records: PhantomData<fn(T)>,
}

impl<T: Display> PrintSink<T> {
    pub fn new() -> Self {
        PrintSink::with_format(display_line::<T> as fn(&T, &mut String))
    }
}

impl<T: Display> Default for PrintSink<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, F: Fn(&T, &mut String) + Clone> PrintSink<T, F> {
    /// Lines produced by `format` (without the newline: the sink adds it).
    pub fn with_format(format: F) -> Self {
        PrintSink {
            format,
            line: String::new(),
            _records: PhantomData,
        }
    }
}

impl<T, F: Clone> Clone for PrintSink<T, F> {
    fn clone(&self) -> Self {
        PrintSink {
            format: self.format.clone(),
            line: String::new(),
            _records: PhantomData,
        }
    }
}

impl<T, F> Sink for PrintSink<T, F>
where
    T: Data,
    F: Fn(&T, &mut String) + Clone + Send + 'static,
{
    type In = T;

    fn write_batch(&mut self, batch: &mut Vec<T>) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        self.line.clear();
        for record in batch.drain(..) {
            (self.format)(&record, &mut self.line);
            self.line.push('\n');
        }
        let mut out = std::io::stdout().lock();
        out.write_all(self.line.as_bytes())
            .and_then(|_| out.flush())
            .map_err(|e| JobError::new(format!("cannot write to stdout: {e}")))
    }
}
