//! Event time in the DataStream API: watermark strategies (Flink's `WatermarkStrategy`) and
//! `DataStream::assign_timestamps_and_watermarks`, with the operator that generates watermarks.
//!
//! Records carry no timestamp field: the timestamp function travels with the stream (its
//! `timestamps`), and keyed operators and windows downstream call it. The watermark operator
//! tracks the highest timestamp seen and emits `max_ts - out_of_orderness - 1` (Flink's bounded
//! out-of-orderness formula) after each batch in which it advanced. It must never emit a
//! watermark per record, nor forward upstream watermarks other than the final `MAX_WATERMARK`
//! (it replaces them, as in Flink).

use crate::api::DataStream;
use crate::data::{Data, Timestamp, MAX_WATERMARK, MIN_WATERMARK};
use crate::error::Result;
use crate::keyed::TimestampFn;
use crate::operator::{Operator, Output};
use std::sync::Arc;
use std::time::Duration;

/// How to extract event timestamps and generate watermarks (Flink's `WatermarkStrategy`).
pub struct WatermarkStrategy<T> {
    max_out_of_orderness: Duration,
    timestamp_assigner: Option<TimestampFn<T>>,
}

impl<T> Clone for WatermarkStrategy<T> {
    fn clone(&self) -> Self {
        WatermarkStrategy {
            max_out_of_orderness: self.max_out_of_orderness,
            timestamp_assigner: self.timestamp_assigner.clone(),
        }
    }
}

impl<T: Data> WatermarkStrategy<T> {
    /// Records may arrive up to `max_out_of_orderness` behind the highest timestamp seen:
    /// the watermark trails it by that much (plus 1 ms, as Flink's watermark is inclusive).
    pub fn for_bounded_out_of_orderness(max_out_of_orderness: Duration) -> Self {
        WatermarkStrategy {
            max_out_of_orderness,
            timestamp_assigner: None,
        }
    }

    /// Timestamps never decrease within a subtask: the watermark is `max_ts - 1`.
    pub fn for_monotonous_timestamps() -> Self {
        Self::for_bounded_out_of_orderness(Duration::ZERO)
    }

    /// The record's event time in ms since the epoch. Without it, the stream's existing
    /// timestamps (`DataStream::with_timestamps`) are used.
    pub fn with_timestamp_assigner(
        mut self,
        f: impl Fn(&T) -> Timestamp + Send + Sync + 'static,
    ) -> Self {
        self.timestamp_assigner = Some(Arc::new(f));
        self
    }

    pub fn max_out_of_orderness(&self) -> Duration {
        self.max_out_of_orderness
    }
}

/// Generates bounded-out-of-orderness watermarks from the records' timestamps.
pub struct TimestampsAndWatermarksOperator<T> {
    timestamps: Option<TimestampFn<T>>,
    /// Out-of-orderness bound in ms.
    bound: i64,
    max_timestamp: Timestamp,
    last_emitted: Timestamp,
}

impl<T: Data> TimestampsAndWatermarksOperator<T> {
    /// Without `timestamps` no watermark is generated except the final one.
    pub fn new(timestamps: Option<TimestampFn<T>>, max_out_of_orderness: Duration) -> Self {
        TimestampsAndWatermarksOperator {
            timestamps,
            bound: i64::try_from(max_out_of_orderness.as_millis()).unwrap_or(i64::MAX),
            max_timestamp: MIN_WATERMARK,
            last_emitted: MIN_WATERMARK,
        }
    }

    /// The watermark for the highest timestamp seen so far.
    pub fn current_watermark(&self) -> Timestamp {
        self.max_timestamp
            .saturating_sub(self.bound)
            .saturating_sub(1)
    }
}

impl<T: Data> Operator for TimestampsAndWatermarksOperator<T> {
    type In = T;
    type Out = T;

    fn process_batch(&mut self, input: &mut Vec<T>, out: &mut Output<T>) -> Result<()> {
        if let Some(f) = &self.timestamps {
            self.max_timestamp = input
                .iter()
                .map(|r| f(r))
                .fold(self.max_timestamp, Timestamp::max);
        }
        out.records.append(input);
        let wm = self.current_watermark();
        if wm > self.last_emitted {
            self.last_emitted = wm;
            out.emit_watermark(wm);
        }
        Ok(())
    }

    /// Upstream watermarks are replaced by this operator's, except the end of input.
    fn on_watermark(&mut self, wm: Timestamp, out: &mut Output<T>) -> Result<()> {
        if wm == MAX_WATERMARK && self.last_emitted < MAX_WATERMARK {
            self.last_emitted = MAX_WATERMARK;
            out.emit_watermark(MAX_WATERMARK);
        }
        Ok(())
    }
}

impl<T: Data> DataStream<T> {
    /// Assigns event timestamps and generates watermarks (Flink's method of the same name).
    ///
    /// The returned stream carries the strategy's timestamp assigner, so keyed process
    /// functions and event-time windows downstream see each record's timestamp. If the strategy
    /// has no assigner the stream's existing timestamps are used; if it has none either, no
    /// watermark but the final one is generated and event-time windows downstream are rejected
    /// when the graph is built.
    pub fn assign_timestamps_and_watermarks(
        &self,
        strategy: WatermarkStrategy<T>,
    ) -> DataStream<T> {
        let timestamps = strategy
            .timestamp_assigner
            .clone()
            .or_else(|| self.timestamps.clone());
        let bound = strategy.max_out_of_orderness;
        let ts = timestamps.clone();
        let mut s = self.transform("Timestamps/Watermarks", move || {
            TimestampsAndWatermarksOperator::new(ts.clone(), bound)
        });
        s.timestamps = timestamps;
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(bound_ms: u64) -> TimestampsAndWatermarksOperator<i64> {
        TimestampsAndWatermarksOperator::new(
            Some(Arc::new(|t: &i64| *t)),
            Duration::from_millis(bound_ms),
        )
    }

    fn run(
        op: &mut TimestampsAndWatermarksOperator<i64>,
        batch: &[i64],
    ) -> (Vec<i64>, Option<Timestamp>) {
        let mut out = Output::new();
        op.process_batch(&mut batch.to_vec(), &mut out).unwrap();
        (out.records, out.watermark)
    }

    #[test]
    fn bounded_out_of_orderness_watermark_trails_the_max_timestamp_by_bound_plus_one() {
        let mut o = op(1000);
        assert_eq!(
            run(&mut o, &[5000, 7000, 6000]),
            (vec![5000, 7000, 6000], Some(5999))
        );
        // An older record does not move the watermark back or re-emit it.
        assert_eq!(run(&mut o, &[6500]), (vec![6500], None));
        assert_eq!(run(&mut o, &[8000]).1, Some(6999));
        assert_eq!(run(&mut o, &[]), (vec![], None));
    }

    #[test]
    fn monotonous_timestamps_watermark_is_max_minus_one() {
        let s = WatermarkStrategy::<i64>::for_monotonous_timestamps();
        let mut o = TimestampsAndWatermarksOperator::new(
            Some(Arc::new(|t: &i64| *t)),
            s.max_out_of_orderness(),
        );
        assert_eq!(run(&mut o, &[10, 20]).1, Some(19));
    }

    #[test]
    fn upstream_watermarks_are_ignored_except_the_final_one() {
        let mut o = op(0);
        let mut out = Output::new();
        o.on_watermark(1_000_000, &mut out).unwrap();
        assert_eq!(out.watermark, None);
        o.on_watermark(MAX_WATERMARK, &mut out).unwrap();
        assert_eq!(out.watermark, Some(MAX_WATERMARK));
        // Nothing moves after the end.
        assert_eq!(run(&mut o, &[5]).1, None);
    }

    #[test]
    fn extreme_timestamps_saturate() {
        let mut o = op(10);
        assert_eq!(run(&mut o, &[i64::MIN]).1, None);
        assert_eq!(run(&mut o, &[i64::MAX]).1, Some(i64::MAX - 11));
    }

    #[test]
    fn the_returned_stream_carries_the_timestamp_assigner() {
        let env = crate::api::StreamEnv::new(eddy_core::config::Config::default());
        let src = env.add_source("numbers", || {
            crate::window::tests::VecSource::new(vec![1i64, 2, 3])
        });
        assert!(src.timestamps.is_none());
        let s = src.assign_timestamps_and_watermarks(
            WatermarkStrategy::for_bounded_out_of_orderness(Duration::from_secs(1))
                .with_timestamp_assigner(|x: &i64| x * 10),
        );
        assert_eq!(s.timestamps.as_ref().map(|f| f(&4)), Some(40));
        assert_eq!(env.into_graph().nodes[1].name, "Timestamps/Watermarks");
    }
}
