//! The stateless operators behind `map`, `flat_map` and `filter`, and the running aggregations
//! behind `reduce` and `sum`. Each works on a whole batch in a tight loop.

use crate::data::{Data, Key};
use crate::error::Result;
use crate::keyed::{KeyedContext, KeyedOpenContext, KeyedProcessFunction};
use crate::operator::{Operator, Output};
use crate::state::ValueState;
use std::marker::PhantomData;

pub struct Map<I, O, F> {
    f: F,
    _p: PhantomData<fn(I) -> O>,
}

impl<I, O, F> Map<I, O, F> {
    pub fn new(f: F) -> Self {
        Map { f, _p: PhantomData }
    }
}

impl<I: Data, O: Data, F: Fn(I) -> O + Send + 'static> Operator for Map<I, O, F> {
    type In = I;
    type Out = O;

    #[inline]
    fn process_batch(&mut self, input: &mut Vec<I>, out: &mut Output<O>) -> Result<()> {
        out.records.extend(input.drain(..).map(&self.f));
        Ok(())
    }
}

pub struct FlatMap<I, O, F> {
    f: F,
    _p: PhantomData<fn(I) -> O>,
}

impl<I, O, F> FlatMap<I, O, F> {
    pub fn new(f: F) -> Self {
        FlatMap { f, _p: PhantomData }
    }
}

impl<I: Data, O: Data, It: IntoIterator<Item = O>, F: Fn(I) -> It + Send + 'static> Operator
    for FlatMap<I, O, F>
{
    type In = I;
    type Out = O;

    #[inline]
    fn process_batch(&mut self, input: &mut Vec<I>, out: &mut Output<O>) -> Result<()> {
        for r in input.drain(..) {
            out.records.extend((self.f)(r));
        }
        Ok(())
    }
}

pub struct Filter<T, F> {
    f: F,
    _p: PhantomData<fn(T)>,
}

impl<T, F> Filter<T, F> {
    pub fn new(f: F) -> Self {
        Filter { f, _p: PhantomData }
    }
}

impl<T: Data, F: Fn(&T) -> bool + Send + 'static> Operator for Filter<T, F> {
    type In = T;
    type Out = T;

    #[inline]
    fn process_batch(&mut self, input: &mut Vec<T>, out: &mut Output<T>) -> Result<()> {
        out.records.extend(input.drain(..).filter(|r| (self.f)(r)));
        Ok(())
    }
}

/// Keyed running reduce: state = the reduced value so far.
pub struct RunningReduce<T, F> {
    f: F,
    state: ValueState<T>,
}

impl<T, F: Clone> Clone for RunningReduce<T, F> {
    fn clone(&self) -> Self {
        RunningReduce {
            f: self.f.clone(),
            state: self.state,
        }
    }
}

impl<T, F> RunningReduce<T, F> {
    pub fn new(f: F) -> Self {
        RunningReduce {
            f,
            state: ValueState::default(),
        }
    }
}

impl<K: Key, T: Data, F: Fn(T, T) -> T + Send + 'static> KeyedProcessFunction<K, T, T>
    for RunningReduce<T, F>
{
    fn open(&mut self, ctx: &mut KeyedOpenContext<'_, K>) -> Result<()> {
        self.state = ctx.value_state("reduce")?;
        Ok(())
    }

    fn process_element(&mut self, value: T, ctx: &mut KeyedContext<'_, K, T>) -> Result<()> {
        let next = match ctx.clear_value(self.state) {
            Some(acc) => (self.f)(acc, value),
            None => value,
        };
        ctx.set_value(self.state, next.clone());
        ctx.emit(next);
        Ok(())
    }
}

/// Keyed running sum of an extracted `i64`.
pub struct RunningSum<T, F> {
    value: F,
    state: ValueState<i64>,
    _t: PhantomData<fn(T)>,
}

impl<T, F: Clone> Clone for RunningSum<T, F> {
    fn clone(&self) -> Self {
        RunningSum {
            value: self.value.clone(),
            state: self.state,
            _t: PhantomData,
        }
    }
}

impl<T, F> RunningSum<T, F> {
    pub fn new(value: F) -> Self {
        RunningSum {
            value,
            state: ValueState::default(),
            _t: PhantomData,
        }
    }
}

impl<K: Key, T: Data, F: Fn(&T) -> i64 + Send + 'static> KeyedProcessFunction<K, T, (K, i64)>
    for RunningSum<T, F>
{
    fn open(&mut self, ctx: &mut KeyedOpenContext<'_, K>) -> Result<()> {
        self.state = ctx.value_state("sum")?;
        Ok(())
    }

    #[inline]
    fn process_element(&mut self, value: T, ctx: &mut KeyedContext<'_, K, (K, i64)>) -> Result<()> {
        let v = (self.value)(&value);
        let sum = ctx.value_or_insert_with(self.state, || 0);
        *sum += v;
        let s = *sum;
        let k = ctx.key().clone();
        ctx.emit((k, s));
        Ok(())
    }
}
