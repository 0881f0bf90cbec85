//! Windows in the DataStream API: `KeyedStream::window(assigner)` gives a [`WindowedStream`],
//! whose `reduce` / `aggregate` / `process` (and `*_with_window`) add a window operator.
//!
//! Misconfiguration is reported when the graph is built, never by a panic: `window` returns a
//! `Result`, failing for invalid sizes and for event-time windows on a stream without
//! timestamps, so a job builder's `?` turns it into the job's build error. This file only wires
//! the graph; windowing itself lives in `crate::window`.

use crate::api::{DataStream, KeyedStream};
use crate::data::{Data, Key};
use crate::error::{JobError, Result};
use crate::keyed::KeySelector;
use crate::state::TimeDomain;
use crate::window::function::{
    AggregateWindow, InternalWindowFunction, ProcessWindow, ReduceWindow,
};
use crate::window::operator::{window_operator_name, WindowOperator};
use crate::window::{AggregateFunction, ProcessWindowFunction, TimeWindow, WindowAssigner};
use std::time::Duration;

/// A keyed stream cut into windows by `W`; finish it with a window function.
pub struct WindowedStream<T: Data, K: Key, W: WindowAssigner> {
    stream: DataStream<T>,
    selector: KeySelector<T, K>,
    assigner: W,
    allowed_lateness_ms: i64,
}

impl<T: Data, K: Key> KeyedStream<T, K> {
    /// Windows the keyed stream (Flink's `window`).
    ///
    /// Errors when the assigner's sizes are invalid, or when it uses event time and the stream
    /// has no timestamps (call `assign_timestamps_and_watermarks` before `key_by`).
    pub fn window<W: WindowAssigner>(&self, assigner: W) -> Result<WindowedStream<T, K, W>> {
        assigner.validate()?;
        if assigner.time_domain() == TimeDomain::EventTime && self.stream.timestamps.is_none() {
            return Err(JobError::new(format!(
                "window({}): the stream has no event-time timestamps; call \
                 assign_timestamps_and_watermarks(WatermarkStrategy::for_bounded_out_of_orderness(..)\
                 .with_timestamp_assigner(..)) before key_by, or use a processing-time assigner",
                assigner.name()
            )));
        }
        Ok(WindowedStream {
            stream: self.stream.clone(),
            selector: self.selector.clone(),
            assigner,
            allowed_lateness_ms: 0,
        })
    }
}

/// The identity finisher of plain `reduce` / `aggregate`.
fn identity<K, T>(_: &K, _: &TimeWindow, value: T) -> T {
    value
}

impl<T: Data, K: Key, W: WindowAssigner> WindowedStream<T, K, W> {
    /// Event-time windows keep their state this long after they fire; records arriving in that
    /// time fire the window again with the updated result (Flink's `allowedLateness`). Default
    /// 0: a window fires once and late records are dropped. Ignored by processing time.
    pub fn allowed_lateness(mut self, lateness: Duration) -> Self {
        self.allowed_lateness_ms = i64::try_from(lateness.as_millis()).unwrap_or(i64::MAX);
        self
    }

    /// Reduces each window's records to one (Flink's `reduce`).
    pub fn reduce(&self, f: impl Fn(T, T) -> T + Clone + Send + Sync + 'static) -> DataStream<T> {
        self.apply(ReduceWindow::new(f, identity::<K, T>, "Reduce"))
    }

    /// Reduces incrementally, then maps the result with the key and window (Flink's `reduce`
    /// with a `ProcessWindowFunction`), e.g. to output the window end with the value.
    pub fn reduce_with_window<O: Data>(
        &self,
        f: impl Fn(T, T) -> T + Clone + Send + Sync + 'static,
        g: impl Fn(&K, &TimeWindow, T) -> O + Clone + Send + Sync + 'static,
    ) -> DataStream<O> {
        self.apply(ReduceWindow::new(f, g, "Reduce, ProcessWindowFunction"))
    }

    /// Aggregates incrementally with an accumulator (Flink's `aggregate`).
    pub fn aggregate<A: AggregateFunction<T>>(&self, agg: A) -> DataStream<A::Out> {
        self.apply(AggregateWindow::new(
            agg,
            identity::<K, A::Out>,
            "Aggregate",
        ))
    }

    /// Aggregates incrementally, then maps the result with the key and window.
    pub fn aggregate_with_window<A: AggregateFunction<T>, O: Data>(
        &self,
        agg: A,
        g: impl Fn(&K, &TimeWindow, A::Out) -> O + Clone + Send + Sync + 'static,
    ) -> DataStream<O> {
        self.apply(AggregateWindow::new(
            agg,
            g,
            "Aggregate, ProcessWindowFunction",
        ))
    }

    /// Buffers each window's records and hands them all to `f` when it fires (Flink's
    /// `process`). Costs memory per record; prefer `reduce` / `aggregate` when they suffice.
    pub fn process<O: Data, P: ProcessWindowFunction<K, T, O>>(&self, f: P) -> DataStream<O> {
        self.apply(ProcessWindow::new(f))
    }

    /// Adds the window operator. Results carry no timestamps (their type may differ): to window
    /// them again in event time, assign timestamps anew (e.g. from the window end).
    fn apply<F: InternalWindowFunction<K, T> + Clone + Sync>(
        &self,
        function: F,
    ) -> DataStream<F::Out> {
        let name = window_operator_name(&self.assigner, function.describe());
        let assigner = self.assigner.clone();
        let selector = self.selector.clone();
        let timestamps = self.stream.timestamps.clone();
        let lateness = self.allowed_lateness_ms;
        self.stream.transform(&name, move || {
            WindowOperator::new(
                assigner.clone(),
                function.clone(),
                selector.clone(),
                timestamps.clone(),
                lateness,
            )
        })
    }
}
