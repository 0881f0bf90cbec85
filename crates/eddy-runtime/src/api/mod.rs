//! The DataStream API: how a job describes its dataflow.
//!
//! `StreamEnv` collects nodes into a [`StreamGraph`]; `DataStream<T>` and `KeyedStream<T, K>`
//! add transformations. Every method captures its record types in the node's factories, so the
//! graph can later be run by any process that calls the same job builder. Building a graph never
//! runs anything.

pub mod ops;
pub mod time;
pub mod window;

use crate::data::{Data, Key};
use crate::error::{JobError, Result};
use crate::graph::{AnyEmit, NodeId, NodeKind, PartitionKind, StreamEdge, StreamGraph, StreamNode};
use crate::keyed::{
    KeyRefSelector, KeySelector, KeyedProcessFunction, KeyedProcessOperator, TimestampFn,
};
use crate::operator::{Operator, TaskInfo};
use crate::sink::{Sink, SinkOperator};
use crate::source::Source;
use crate::task::chain::{Discard, Emit, FanOut, OperatorLink};
use crate::task::input::Decoder;
use crate::task::writer::{Partitioner, RecordWriter};
use eddy_core::config::Config;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

/// Unboxes an `AnyEmit` built for `T`.
pub(crate) fn downcast_emit<T: Data>(e: AnyEmit, what: &str) -> Result<Box<dyn Emit<T>>> {
    e.downcast::<Box<dyn Emit<T>>>().map(|b| *b).map_err(|_| {
        JobError::new(format!(
            "internal: record type mismatch while wiring {what}"
        ))
    })
}

fn box_emit<T: Data>(e: Box<dyn Emit<T>>) -> AnyEmit {
    Box::new(e)
}

/// The environment a job builder gets: where nodes are added, plus the job's configuration and
/// arguments.
#[derive(Clone)]
pub struct StreamEnv {
    graph: Rc<RefCell<StreamGraph>>,
    config: Rc<Config>,
}

impl StreamEnv {
    pub fn new(config: Config) -> Self {
        StreamEnv {
            graph: Rc::new(RefCell::new(StreamGraph::default())),
            config: Rc::new(config),
        }
    }

    /// The job's configuration (config.yaml + -D).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Takes the built graph out; the env is empty afterwards.
    pub fn into_graph(self) -> StreamGraph {
        std::mem::take(&mut *self.graph.borrow_mut())
    }

    fn add_node(
        &self,
        name: &str,
        kind: NodeKind,
        input: crate::graph::InputFactory,
        fan_out: crate::graph::FanOutFactory,
        discard: crate::graph::DiscardFactory,
    ) -> NodeId {
        let mut g = self.graph.borrow_mut();
        let id = g.nodes.len();
        g.nodes.push(StreamNode {
            id,
            name: name.to_string(),
            uid: default_uid(id, name),
            uid_set_by_user: false,
            parallelism: None,
            chaining_allowed: true,
            is_sink: false,
            kind,
            input,
            fan_out,
            discard,
        });
        id
    }

    fn add_typed_node<I: Data, O: Data>(&self, name: &str, kind: NodeKind) -> NodeId {
        self.add_node(
            name,
            kind,
            Arc::new(|e| {
                Ok(Box::new(Decoder::<I>::new(downcast_emit::<I>(
                    e, "an input",
                )?)))
            }),
            Arc::new(|targets| {
                let t = targets
                    .into_iter()
                    .map(|e| downcast_emit::<O>(e, "a fan-out"))
                    .collect::<Result<Vec<_>>>()?;
                Ok(box_emit::<O>(Box::new(FanOut::new(t))))
            }),
            Arc::new(|| box_emit::<O>(Box::new(Discard))),
        )
    }

    /// Adds a source; `make` builds one instance per subtask.
    pub fn add_source<S: Source>(
        &self,
        name: &str,
        make: impl Fn() -> S + Send + Sync + 'static,
    ) -> DataStream<S::Out> {
        let factory: crate::graph::SourceFactory = Arc::new(move |next, info, restored| {
            let next = downcast_emit::<S::Out>(next, "a source")?;
            Ok(Box::new(crate::task::source_driver::SourceLink::open(
                make(),
                info,
                restored,
                next,
            )?))
        });
        let id = self.add_typed_node::<(), S::Out>(name, NodeKind::Source(factory));
        DataStream {
            env: self.clone(),
            node: id,
            pending: PartitionKind::Forward,
            hash: None,
            timestamps: None,
        }
    }
}

/// Default uid: position and name. Set `uid()` explicitly to keep state across graph changes.
fn default_uid(id: NodeId, name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("{id}-{clean}")
}

/// The stable hash of a record's key (hash partitioning).
pub(crate) type KeyHash<T> = Arc<dyn Fn(&T) -> u64 + Send + Sync>;

/// A stream of `T`.
pub struct DataStream<T: Data> {
    pub(crate) env: StreamEnv,
    pub(crate) node: NodeId,
    /// How the next consumer connects.
    pub(crate) pending: PartitionKind,
    pub(crate) hash: Option<KeyHash<T>>,
    /// Event-time timestamps, when assigned upstream and the type has not changed since.
    pub(crate) timestamps: Option<TimestampFn<T>>,
}

impl<T: Data> Clone for DataStream<T> {
    fn clone(&self) -> Self {
        DataStream {
            env: self.env.clone(),
            node: self.node,
            pending: self.pending,
            hash: self.hash.clone(),
            timestamps: self.timestamps.clone(),
        }
    }
}

impl<T: Data> DataStream<T> {
    pub fn env(&self) -> &StreamEnv {
        &self.env
    }

    /// Connects this stream to a new node.
    pub(crate) fn connect_to(&self, target: NodeId) {
        let hash = self.hash.clone();
        let output: crate::graph::OutputFactory =
            Arc::new(move |channels, max_parallelism, kind, metrics| {
                let partitioner = match kind {
                    PartitionKind::Forward => Partitioner::Forward,
                    PartitionKind::Rebalance => Partitioner::Rebalance(0),
                    PartitionKind::Broadcast => Partitioner::Broadcast,
                    PartitionKind::Hash => match &hash {
                        Some(h) => Partitioner::Hash {
                            hash: h.clone(),
                            max_parallelism,
                        },
                        None => Partitioner::Rebalance(0),
                    },
                };
                box_emit::<T>(Box::new(RecordWriter::<T>::new(
                    channels,
                    partitioner,
                    metrics,
                )))
            });
        self.env.graph.borrow_mut().edges.push(StreamEdge {
            source: self.node,
            target,
            kind: self.pending,
            output,
        });
    }

    /// Adds an operator node consuming this stream; `make` builds one instance per subtask.
    pub fn transform<O: Operator<In = T>>(
        &self,
        name: &str,
        make: impl Fn() -> O + Send + Sync + 'static,
    ) -> DataStream<O::Out> {
        let factory: crate::graph::OperatorFactory =
            Arc::new(move |next, info: &TaskInfo, restored| {
                let next = downcast_emit::<O::Out>(next, "an operator")?;
                Ok(box_emit::<O::In>(Box::new(OperatorLink::open(
                    make(),
                    info,
                    restored,
                    next,
                )?)))
            });
        let id = self
            .env
            .add_typed_node::<O::In, O::Out>(name, NodeKind::Operator(factory));
        self.connect_to(id);
        DataStream {
            env: self.env.clone(),
            node: id,
            pending: PartitionKind::Forward,
            hash: None,
            timestamps: None,
        }
    }

    /// Like `transform` for operators that keep the record type and its timestamps.
    pub(crate) fn transform_same<O: Operator<In = T, Out = T>>(
        &self,
        name: &str,
        make: impl Fn() -> O + Send + Sync + 'static,
    ) -> DataStream<T> {
        let mut s = self.transform(name, make);
        s.timestamps = self.timestamps.clone();
        s
    }

    pub fn map<U: Data>(
        &self,
        f: impl Fn(T) -> U + Clone + Send + Sync + 'static,
    ) -> DataStream<U> {
        self.transform("Map", move || ops::Map::new(f.clone()))
    }

    pub fn flat_map<U: Data, I: IntoIterator<Item = U>>(
        &self,
        f: impl Fn(T) -> I + Clone + Send + Sync + 'static,
    ) -> DataStream<U> {
        self.transform("FlatMap", move || ops::FlatMap::new(f.clone()))
    }

    pub fn filter(&self, f: impl Fn(&T) -> bool + Clone + Send + Sync + 'static) -> DataStream<T> {
        self.transform_same("Filter", move || ops::Filter::new(f.clone()))
    }

    /// Partitions by key: records with equal keys go to the same subtask (by key group).
    pub fn key_by<K: Key>(&self, f: impl Fn(&T) -> K + Send + Sync + 'static) -> KeyedStream<T, K> {
        let selector: KeySelector<T, K> = Arc::new(f);
        let s = selector.clone();
        let mut stream = self.clone();
        stream.pending = PartitionKind::Hash;
        stream.hash = Some(Arc::new(move |t: &T| {
            eddy_core::keygroup::stable_hash(&s(t))
        }));
        KeyedStream {
            stream,
            selector,
            key_ref: None,
        }
    }

    /// Like `key_by`, for a key that is a field of the record: partitioning hashes the key in
    /// place instead of cloning it (cheaper for `String` keys).
    pub fn key_by_ref<K: Key>(
        &self,
        f: impl Fn(&T) -> &K + Clone + Send + Sync + 'static,
    ) -> KeyedStream<T, K> {
        let owned = f.clone();
        let selector: KeySelector<T, K> = Arc::new(move |t: &T| owned(t).clone());
        let key_ref: KeyRefSelector<T, K> = Arc::new(f.clone());
        let mut stream = self.clone();
        stream.pending = PartitionKind::Hash;
        stream.hash = Some(Arc::new(move |t: &T| {
            eddy_core::keygroup::stable_hash(f(t))
        }));
        KeyedStream {
            stream,
            selector,
            key_ref: Some(key_ref),
        }
    }

    /// Round-robin to the next operator's subtasks.
    pub fn rebalance(&self) -> DataStream<T> {
        let mut s = self.clone();
        s.pending = PartitionKind::Rebalance;
        s
    }

    /// Every record to every subtask of the next operator.
    pub fn broadcast(&self) -> DataStream<T> {
        let mut s = self.clone();
        s.pending = PartitionKind::Broadcast;
        s
    }

    /// Writes the stream to a sink; `make` builds one instance per subtask.
    pub fn sink_to<S: Sink<In = T>>(
        &self,
        name: &str,
        make: impl Fn() -> S + Send + Sync + 'static,
    ) -> DataStream<()> {
        let s = self.transform(name, move || SinkOperator(make()));
        s.env.graph.borrow_mut().nodes[s.node].is_sink = true;
        s
    }

    fn with_node(self, f: impl FnOnce(&mut StreamNode)) -> Self {
        f(&mut self.env.graph.borrow_mut().nodes[self.node]);
        self
    }

    /// Names the last operator (shown in the CLI and REST).
    pub fn name(self, name: &str) -> Self {
        self.with_node(|n| n.name = name.to_string())
    }

    /// Sets the last operator's stable uid: state is matched by it on restore.
    pub fn uid(self, uid: &str) -> Self {
        self.with_node(|n| {
            n.uid = uid.to_string();
            n.uid_set_by_user = true;
        })
    }

    pub fn set_parallelism(self, parallelism: u32) -> Self {
        self.with_node(|n| n.parallelism = Some(parallelism))
    }

    /// Starts a new chain at the last operator.
    pub fn disable_chaining(self) -> Self {
        self.with_node(|n| n.chaining_allowed = false)
    }

    /// Sets the event-time timestamp of each record (used by windows and timers downstream).
    /// Watermarks come from a watermark strategy; see `assign_timestamps_and_watermarks`.
    pub fn with_timestamps(mut self, f: impl Fn(&T) -> i64 + Send + Sync + 'static) -> Self {
        self.timestamps = Some(Arc::new(f));
        self
    }
}

/// A stream partitioned by key `K`.
pub struct KeyedStream<T: Data, K: Key> {
    pub(crate) stream: DataStream<T>,
    pub(crate) selector: KeySelector<T, K>,
    /// From `key_by_ref`: keyed process operators borrow the key instead of cloning it.
    pub(crate) key_ref: Option<KeyRefSelector<T, K>>,
}

impl<T: Data, K: Key> KeyedStream<T, K> {
    pub fn key_selector(&self) -> KeySelector<T, K> {
        self.selector.clone()
    }

    /// The underlying (hash-partitioned) stream.
    pub fn stream(&self) -> &DataStream<T> {
        &self.stream
    }

    /// Runs a keyed process function; `f` is cloned for every subtask.
    pub fn process<O: Data, F: KeyedProcessFunction<K, T, O> + Clone + Sync>(
        &self,
        f: F,
    ) -> DataStream<O> {
        let selector = self.selector.clone();
        let key_ref = self.key_ref.clone();
        let ts = self.stream.timestamps.clone();
        self.stream.transform("KeyedProcess", move || {
            KeyedProcessOperator::new(f.clone(), selector.clone(), ts.clone())
                .with_key_ref(key_ref.clone())
        })
    }

    /// A running reduce: for each record, combines it with the key's current value and emits
    /// the result.
    pub fn reduce(&self, f: impl Fn(T, T) -> T + Clone + Send + Sync + 'static) -> DataStream<T> {
        let mut s = self.process(ops::RunningReduce::new(f)).name("Reduce");
        s.timestamps = self.stream.timestamps.clone();
        s
    }

    /// A running sum of `value(record)` per key, emitting `(key, sum)` for every record.
    pub fn sum(
        &self,
        value: impl Fn(&T) -> i64 + Clone + Send + Sync + 'static,
    ) -> DataStream<(K, i64)> {
        self.process(ops::RunningSum::new(value)).name("Sum")
    }
}
