//! Window functions: what a window computes (Flink's `ReduceFunction`, `AggregateFunction`,
//! `ProcessWindowFunction`) and the one internal shape the window operator runs them through.
//!
//! Incremental functions (reduce, aggregate) keep one accumulator per (key, window) and fold each
//! record into it on arrival; `process` buffers the window's records and sees them all when it
//! fires. These types never touch state backends, timers or clocks: the operator owns those.

use crate::data::Data;
use crate::error::Result;
use crate::window::assigner::TimeWindow;
use std::marker::PhantomData;

/// Flink's AggregateFunction: an incremental aggregation with an accumulator.
///
/// Cloned into every subtask. `merge` is needed by session windows (two sessions bridged by a
/// record become one).
pub trait AggregateFunction<T>: Clone + Send + Sync + 'static {
    /// The running state of one window (checkpointed).
    type Acc: Data;
    /// What the window emits.
    type Out: Data;

    fn create_accumulator(&self) -> Self::Acc;
    /// Folds one record into the accumulator.
    fn add(&self, value: T, acc: &mut Self::Acc);
    fn get_result(&self, acc: Self::Acc) -> Self::Out;
    /// Combines the accumulators of two merging windows.
    fn merge(&self, a: Self::Acc, b: Self::Acc) -> Self::Acc;
}

/// Flink's ProcessWindowFunction: sees all records of a window when it fires.
///
/// Implemented for closures `Fn(&K, &TimeWindow, Vec<T>, &mut Vec<O>) -> Result<()>`.
pub trait ProcessWindowFunction<K, T, O>: Clone + Send + Sync + 'static {
    /// `elements` are in arrival order (after session merges: the earlier session's records
    /// first); push results to `out`.
    fn process(
        &mut self,
        key: &K,
        window: &TimeWindow,
        elements: Vec<T>,
        out: &mut Vec<O>,
    ) -> Result<()>;
}

impl<K, T, O, F> ProcessWindowFunction<K, T, O> for F
where
    F: Fn(&K, &TimeWindow, Vec<T>, &mut Vec<O>) -> Result<()> + Clone + Send + Sync + 'static,
{
    fn process(
        &mut self,
        key: &K,
        window: &TimeWindow,
        elements: Vec<T>,
        out: &mut Vec<O>,
    ) -> Result<()> {
        self(key, window, elements, out)
    }
}

/// What the window operator runs: an accumulator per (key, window), folded on arrival, merged
/// when sessions merge, and turned into output when the window fires.
pub trait InternalWindowFunction<K, T>: Send + 'static {
    type Acc: Data;
    type Out: Data;

    /// A window's accumulator before its first record.
    fn create(&self) -> Self::Acc;
    fn add(&self, acc: &mut Self::Acc, value: T);
    fn merge(&self, a: Self::Acc, b: Self::Acc) -> Self::Acc;
    /// The window fired: emit its result.
    fn fire(
        &mut self,
        key: &K,
        window: &TimeWindow,
        acc: Self::Acc,
        out: &mut Vec<Self::Out>,
    ) -> Result<()>;
    /// Flink-style description for the operator name, e.g. `Reduce`.
    fn describe(&self) -> &'static str;
}

/// `reduce` and `reduce_with_window`: the accumulator is the reduced record so far (`None` only
/// before the first record, so folding moves values instead of cloning them); `finish` maps the
/// reduced value with the key and window (the identity for plain `reduce`).
pub struct ReduceWindow<T, O, F, G> {
    reduce: F,
    finish: G,
    describe: &'static str,
    _p: PhantomData<fn(T) -> O>,
}

impl<T, O, F: Clone, G: Clone> Clone for ReduceWindow<T, O, F, G> {
    fn clone(&self) -> Self {
        ReduceWindow {
            reduce: self.reduce.clone(),
            finish: self.finish.clone(),
            describe: self.describe,
            _p: PhantomData,
        }
    }
}

impl<T, O, F, G> ReduceWindow<T, O, F, G> {
    pub fn new(reduce: F, finish: G, describe: &'static str) -> Self {
        ReduceWindow {
            reduce,
            finish,
            describe,
            _p: PhantomData,
        }
    }
}

impl<K, T, O, F, G> InternalWindowFunction<K, T> for ReduceWindow<T, O, F, G>
where
    T: Data,
    O: Data,
    F: Fn(T, T) -> T + Send + 'static,
    G: Fn(&K, &TimeWindow, T) -> O + Send + 'static,
{
    type Acc = Option<T>;
    type Out = O;

    fn create(&self) -> Option<T> {
        None
    }

    #[inline]
    fn add(&self, acc: &mut Option<T>, value: T) {
        *acc = Some(match acc.take() {
            Some(prev) => (self.reduce)(prev, value),
            None => value,
        });
    }

    fn merge(&self, a: Option<T>, b: Option<T>) -> Option<T> {
        match (a, b) {
            (Some(a), Some(b)) => Some((self.reduce)(a, b)),
            (a, b) => a.or(b),
        }
    }

    fn fire(
        &mut self,
        key: &K,
        window: &TimeWindow,
        acc: Option<T>,
        out: &mut Vec<O>,
    ) -> Result<()> {
        if let Some(v) = acc {
            out.push((self.finish)(key, window, v));
        }
        Ok(())
    }

    fn describe(&self) -> &'static str {
        self.describe
    }
}

/// `aggregate` and `aggregate_with_window`: Flink's AggregateFunction, its result optionally
/// mapped with the key and window.
pub struct AggregateWindow<T, O, A, G> {
    agg: A,
    finish: G,
    describe: &'static str,
    _p: PhantomData<fn(T) -> O>,
}

impl<T, O, A: Clone, G: Clone> Clone for AggregateWindow<T, O, A, G> {
    fn clone(&self) -> Self {
        AggregateWindow {
            agg: self.agg.clone(),
            finish: self.finish.clone(),
            describe: self.describe,
            _p: PhantomData,
        }
    }
}

impl<T, O, A, G> AggregateWindow<T, O, A, G> {
    pub fn new(agg: A, finish: G, describe: &'static str) -> Self {
        AggregateWindow {
            agg,
            finish,
            describe,
            _p: PhantomData,
        }
    }
}

impl<K, T, O, A, G> InternalWindowFunction<K, T> for AggregateWindow<T, O, A, G>
where
    T: Data,
    O: Data,
    A: AggregateFunction<T>,
    G: Fn(&K, &TimeWindow, A::Out) -> O + Send + 'static,
{
    type Acc = A::Acc;
    type Out = O;

    fn create(&self) -> A::Acc {
        self.agg.create_accumulator()
    }

    #[inline]
    fn add(&self, acc: &mut A::Acc, value: T) {
        self.agg.add(value, acc)
    }

    fn merge(&self, a: A::Acc, b: A::Acc) -> A::Acc {
        self.agg.merge(a, b)
    }

    fn fire(&mut self, key: &K, window: &TimeWindow, acc: A::Acc, out: &mut Vec<O>) -> Result<()> {
        out.push((self.finish)(key, window, self.agg.get_result(acc)));
        Ok(())
    }

    fn describe(&self) -> &'static str {
        self.describe
    }
}

/// `process`: buffers the window's records (a `Vec` per window) and hands them over on firing.
pub struct ProcessWindow<T, O, P> {
    function: P,
    _p: PhantomData<fn(T) -> O>,
}

impl<T, O, P: Clone> Clone for ProcessWindow<T, O, P> {
    fn clone(&self) -> Self {
        ProcessWindow {
            function: self.function.clone(),
            _p: PhantomData,
        }
    }
}

impl<T, O, P> ProcessWindow<T, O, P> {
    pub fn new(function: P) -> Self {
        ProcessWindow {
            function,
            _p: PhantomData,
        }
    }
}

impl<K, T, O, P> InternalWindowFunction<K, T> for ProcessWindow<T, O, P>
where
    K: 'static,
    T: Data,
    O: Data,
    P: ProcessWindowFunction<K, T, O>,
{
    type Acc = Vec<T>;
    type Out = O;

    fn create(&self) -> Vec<T> {
        Vec::new()
    }

    #[inline]
    fn add(&self, acc: &mut Vec<T>, value: T) {
        acc.push(value)
    }

    fn merge(&self, mut a: Vec<T>, mut b: Vec<T>) -> Vec<T> {
        a.append(&mut b);
        a
    }

    fn fire(&mut self, key: &K, window: &TimeWindow, acc: Vec<T>, out: &mut Vec<O>) -> Result<()> {
        self.function.process(key, window, acc, out)
    }

    fn describe(&self) -> &'static str {
        "ProcessWindowFunction"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone)]
    struct Average;

    impl AggregateFunction<i64> for Average {
        type Acc = (i64, i64);
        type Out = f64;
        fn create_accumulator(&self) -> (i64, i64) {
            (0, 0)
        }
        fn add(&self, value: i64, acc: &mut (i64, i64)) {
            acc.0 += value;
            acc.1 += 1;
        }
        fn get_result(&self, acc: (i64, i64)) -> f64 {
            acc.0 as f64 / acc.1.max(1) as f64
        }
        fn merge(&self, a: (i64, i64), b: (i64, i64)) -> (i64, i64) {
            (a.0 + b.0, a.1 + b.1)
        }
    }

    fn fire<F: InternalWindowFunction<u8, i64>>(f: &mut F, acc: F::Acc) -> Vec<F::Out> {
        let mut out = Vec::new();
        f.fire(&0, &TimeWindow::new(0, 10), acc, &mut out).unwrap();
        out
    }

    #[test]
    fn reduce_folds_and_merges_without_a_first_value() {
        let mut f = ReduceWindow::new(
            |a: i64, b: i64| a.max(b),
            |_: &u8, w: &TimeWindow, v: i64| (w.end, v),
            "Reduce",
        );
        let mut a = InternalWindowFunction::<u8, i64>::create(&f);
        assert_eq!(fire(&mut f, a), vec![], "an empty window emits nothing");
        a = None;
        for v in [3, 9, 4] {
            f.add(&mut a, v);
        }
        let b = Some(7);
        let merged = InternalWindowFunction::<u8, i64>::merge(&f, a, b);
        assert_eq!(fire(&mut f, merged), vec![(10, 9)]);
    }

    #[test]
    fn aggregate_uses_the_accumulator_and_merges() {
        let mut f = AggregateWindow::new(Average, |_: &u8, _: &TimeWindow, v: f64| v, "Aggregate");
        let mut a = InternalWindowFunction::<u8, i64>::create(&f);
        f.add(&mut a, 2);
        f.add(&mut a, 4);
        let mut b = InternalWindowFunction::<u8, i64>::create(&f);
        f.add(&mut b, 9);
        let m = InternalWindowFunction::<u8, i64>::merge(&f, a, b);
        assert_eq!(fire(&mut f, m), vec![5.0]);
    }

    #[test]
    fn process_sees_all_elements_in_arrival_order() {
        let p = |k: &u8, w: &TimeWindow, xs: Vec<i64>, out: &mut Vec<String>| -> Result<()> {
            out.push(format!("{k}@{}..{}: {xs:?}", w.start, w.end));
            Ok(())
        };
        let mut f = ProcessWindow::new(p);
        let mut a = InternalWindowFunction::<u8, i64>::create(&f);
        f.add(&mut a, 5);
        f.add(&mut a, 1);
        let m = InternalWindowFunction::<u8, i64>::merge(&f, a, vec![8]);
        assert_eq!(fire(&mut f, m), vec!["0@0..10: [5, 1, 8]".to_string()]);
    }
}
