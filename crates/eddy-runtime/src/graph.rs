//! The stream graph (operators and the exchanges between them, as the API built it) and the job
//! graph (operators chained into vertices), plus the typed factories that let any process turn a
//! vertex back into a running chain.
//!
//! Types are erased here: each node keeps closures, captured while its record types were known,
//! that build its operator link, its input decoder and its network writers. This file decides
//! chaining; it never runs anything.

use crate::error::{JobError, Result};
use crate::operator::TaskInfo;
use crate::snapshot::OperatorSnapshot;
use crate::source::SourceStatus;
use crate::task::chain::Control;
use crate::task::channel::ChannelWriter;
use crate::task::input::InputHandler;
use std::any::Any;
use std::sync::Arc;

pub type NodeId = usize;

/// How records of an edge are distributed over the consumer's subtasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PartitionKind {
    /// Subtask i → subtask i (equal parallelism); chainable.
    Forward,
    /// Round robin.
    Rebalance,
    /// Every record to every subtask.
    Broadcast,
    /// By key group of the record's key.
    Hash,
}

impl PartitionKind {
    pub fn name(&self) -> &'static str {
        match self {
            PartitionKind::Forward => "FORWARD",
            PartitionKind::Rebalance => "REBALANCE",
            PartitionKind::Broadcast => "BROADCAST",
            PartitionKind::Hash => "HASH",
        }
    }
}

/// A type-erased `Box<dyn Emit<T>>` boxed again as `Any`; the node that made it knows `T`.
pub type AnyEmit = Box<dyn Any>;

/// A running source: polled by its task.
pub trait SourceDriver {
    fn poll(&mut self, max_records: usize) -> Result<SourceStatus>;
    /// The chain after the source (watermarks, flush, end of input...).
    fn chain(&mut self) -> &mut dyn Control;
    /// Snapshot the source's position, then pass the barrier down the chain.
    fn barrier(
        &mut self,
        checkpoint_id: u64,
        snapshots: &mut crate::task::chain::ChainSnapshot,
    ) -> Result<()>;
    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()>;
    /// After `poll` returned `Finished`: end of data down the chain (operators finish, writers
    /// send `EndOfData`). The task sends the end of the partition later, through `chain()`.
    fn end_input(&mut self) -> Result<()>;
    fn close(&mut self);
}

/// Builds a node's link given its downstream (`AnyEmit` of its output type); returns an
/// `AnyEmit` of its input type.
pub type OperatorFactory =
    Arc<dyn Fn(AnyEmit, &TaskInfo, Option<&OperatorSnapshot>) -> Result<AnyEmit> + Send + Sync>;
pub type SourceFactory = Arc<
    dyn Fn(AnyEmit, &TaskInfo, Option<&OperatorSnapshot>) -> Result<Box<dyn SourceDriver>>
        + Send
        + Sync,
>;
/// Wraps an `AnyEmit` of the node's input type into a decoder of network/local batches.
pub type InputFactory = Arc<dyn Fn(AnyEmit) -> Result<Box<dyn InputHandler>> + Send + Sync>;
/// Combines several `AnyEmit`s of the node's output type into one.
pub type FanOutFactory = Arc<dyn Fn(Vec<AnyEmit>) -> Result<AnyEmit> + Send + Sync>;
/// The end of a chain with no consumers, of the node's output type.
pub type DiscardFactory = Arc<dyn Fn() -> AnyEmit + Send + Sync>;
/// Builds an edge's network writer (`AnyEmit` of the source node's output type) over the
/// channels to the consumer's subtasks; the `u32` is the max parallelism (hash edges).
pub type OutputFactory = Arc<
    dyn Fn(
            Vec<ChannelWriter>,
            u32,
            PartitionKind,
            Arc<crate::task::metrics::TaskMetrics>,
        ) -> AnyEmit
        + Send
        + Sync,
>;

pub enum NodeKind {
    Source(SourceFactory),
    Operator(OperatorFactory),
}

pub struct StreamNode {
    pub id: NodeId,
    pub name: String,
    pub uid: String,
    pub uid_set_by_user: bool,
    /// `None`: the job's default parallelism.
    pub parallelism: Option<u32>,
    pub chaining_allowed: bool,
    pub is_sink: bool,
    pub kind: NodeKind,
    pub input: InputFactory,
    pub fan_out: FanOutFactory,
    pub discard: DiscardFactory,
}

pub struct StreamEdge {
    pub source: NodeId,
    pub target: NodeId,
    pub kind: PartitionKind,
    pub output: OutputFactory,
}

/// What a job's builder produced.
#[derive(Default)]
pub struct StreamGraph {
    pub nodes: Vec<StreamNode>,
    pub edges: Vec<StreamEdge>,
}

impl StreamGraph {
    pub fn inputs(&self, node: NodeId) -> impl Iterator<Item = (usize, &StreamEdge)> {
        self.edges
            .iter()
            .enumerate()
            .filter(move |(_, e)| e.target == node)
    }

    pub fn outputs(&self, node: NodeId) -> impl Iterator<Item = (usize, &StreamEdge)> {
        self.edges
            .iter()
            .enumerate()
            .filter(move |(_, e)| e.source == node)
    }
}

/// A chain of operators run by one task per subtask.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct JobVertex {
    pub id: usize,
    /// Node names joined with " -> ", as Flink shows chains.
    pub name: String,
    /// Stream nodes in chain order (head first).
    pub nodes: Vec<NodeId>,
    pub operator_uids: Vec<String>,
    pub parallelism: u32,
    pub max_parallelism: u32,
    pub is_source: bool,
}

/// An exchange between two vertices.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct JobEdge {
    pub source: usize,
    pub target: usize,
    pub kind: PartitionKind,
    /// Index into `StreamGraph::edges`.
    pub stream_edge: usize,
}

/// The chained graph: what the JobMaster schedules. Serializable (the REST API shows it).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct JobGraph {
    pub vertices: Vec<JobVertex>,
    pub edges: Vec<JobEdge>,
}

impl JobGraph {
    /// Chains a stream graph. Rules (Flink's, simplified): an edge is chained when it is
    /// FORWARD, both ends have the same parallelism, the consumer has exactly this one input,
    /// the producer has exactly this one output, and the consumer allows chaining.
    pub fn from_stream_graph(
        g: &StreamGraph,
        default_parallelism: u32,
        max_parallelism: u32,
    ) -> Result<JobGraph> {
        let par = |n: NodeId| g.nodes[n].parallelism.unwrap_or(default_parallelism);
        for n in &g.nodes {
            eddy_core::keygroup::validate_parallelism(par(n.id), max_parallelism)
                .map_err(|e| JobError::new(format!("operator '{}': {e}", n.name)))?;
        }
        // Flink's rule: a default (forward) connection between different parallelisms becomes
        // a rebalance.
        let kind_of = |e: &StreamEdge| {
            if e.kind == PartitionKind::Forward && par(e.source) != par(e.target) {
                PartitionKind::Rebalance
            } else {
                e.kind
            }
        };
        let chained = |e: &StreamEdge| {
            e.kind == PartitionKind::Forward
                && par(e.source) == par(e.target)
                && g.inputs(e.target).count() == 1
                && g.outputs(e.source).count() == 1
                && g.nodes[e.target].chaining_allowed
        };
        let mut vertex_of = vec![usize::MAX; g.nodes.len()];
        let mut vertices: Vec<JobVertex> = Vec::new();
        for n in &g.nodes {
            // A node starts a chain unless its single input edge is chained.
            let head = !g.inputs(n.id).any(|(_, e)| chained(e));
            if !head {
                continue;
            }
            let mut nodes = vec![n.id];
            let mut cur = n.id;
            while let Some((_, e)) = g.outputs(cur).find(|(_, e)| chained(e)) {
                nodes.push(e.target);
                cur = e.target;
            }
            let id = vertices.len();
            for &m in &nodes {
                vertex_of[m] = id;
            }
            vertices.push(JobVertex {
                id,
                name: nodes
                    .iter()
                    .map(|&m| g.nodes[m].name.as_str())
                    .collect::<Vec<_>>()
                    .join(" -> "),
                operator_uids: nodes.iter().map(|&m| g.nodes[m].uid.clone()).collect(),
                nodes,
                parallelism: par(n.id),
                max_parallelism,
                is_source: matches!(g.nodes[n.id].kind, NodeKind::Source(_)),
            });
        }
        if vertex_of.contains(&usize::MAX) {
            return Err(JobError::new(
                "the job graph has a cycle: streams must form a DAG",
            ));
        }
        let edges = g
            .edges
            .iter()
            .enumerate()
            .filter(|(_, e)| !chained(e))
            .map(|(i, e)| JobEdge {
                source: vertex_of[e.source],
                target: vertex_of[e.target],
                kind: kind_of(e),
                stream_edge: i,
            })
            .collect();
        Ok(JobGraph { vertices, edges })
    }

    pub fn inputs_of(&self, vertex: usize) -> impl Iterator<Item = &JobEdge> {
        self.edges.iter().filter(move |e| e.target == vertex)
    }

    pub fn outputs_of(&self, vertex: usize) -> impl Iterator<Item = &JobEdge> {
        self.edges.iter().filter(move |e| e.source == vertex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::StreamEnv;
    use crate::operator::Output;
    use crate::source::{Source, SourceStatus};

    #[derive(Clone)]
    struct Nothing;

    impl Source for Nothing {
        type Out = u64;
        fn poll_next(&mut self, _out: &mut Output<u64>, _max: usize) -> Result<SourceStatus> {
            Ok(SourceStatus::Finished)
        }
    }

    fn chains(g: &JobGraph) -> Vec<String> {
        g.vertices
            .iter()
            .map(|v| format!("{}x{}", v.name, v.parallelism))
            .collect()
    }

    #[test]
    fn forward_operators_of_equal_parallelism_chain_into_one_vertex() {
        let env = StreamEnv::new(Default::default());
        env.add_source("src", || Nothing)
            .map(|x: u64| x + 1)
            .name("a")
            .filter(|x: &u64| *x > 0)
            .name("b");
        let g = JobGraph::from_stream_graph(&env.into_graph(), 3, 128).unwrap();
        assert_eq!(chains(&g), vec!["src -> a -> bx3"]);
        assert!(g.edges.is_empty());
    }

    #[test]
    fn key_by_rebalance_and_broadcast_break_chains() {
        for (name, kind) in [
            ("hash", PartitionKind::Hash),
            ("rebalance", PartitionKind::Rebalance),
            ("broadcast", PartitionKind::Broadcast),
        ] {
            let env = StreamEnv::new(Default::default());
            let s = env.add_source("src", || Nothing);
            let s = match kind {
                PartitionKind::Hash => s.key_by(|x: &u64| *x).stream().clone(),
                PartitionKind::Rebalance => s.rebalance(),
                _ => s.broadcast(),
            };
            s.map(|x: u64| x).name("m");
            let g = JobGraph::from_stream_graph(&env.into_graph(), 2, 128).unwrap();
            assert_eq!(chains(&g), vec!["srcx2", "mx2"], "{name}");
            assert_eq!(g.edges.len(), 1);
            assert_eq!(g.edges[0].kind, kind, "{name}");
        }
    }

    #[test]
    fn different_parallelism_breaks_the_chain_and_becomes_rebalance() {
        let env = StreamEnv::new(Default::default());
        env.add_source("src", || Nothing)
            .set_parallelism(1)
            .map(|x: u64| x)
            .name("m");
        let g = JobGraph::from_stream_graph(&env.into_graph(), 4, 128).unwrap();
        assert_eq!(chains(&g), vec!["srcx1", "mx4"]);
        assert_eq!(g.edges[0].kind, PartitionKind::Rebalance);
    }

    #[test]
    fn disable_chaining_and_fan_out_start_new_vertices() {
        let env = StreamEnv::new(Default::default());
        let s = env.add_source("src", || Nothing);
        s.map(|x: u64| x).name("a").disable_chaining();
        let g = JobGraph::from_stream_graph(&env.into_graph(), 1, 128).unwrap();
        assert_eq!(chains(&g), vec!["srcx1", "ax1"]);
        let env = StreamEnv::new(Default::default());
        let s = env.add_source("src", || Nothing);
        s.map(|x: u64| x).name("a");
        s.map(|x: u64| x).name("b");
        let g = JobGraph::from_stream_graph(&env.into_graph(), 1, 128).unwrap();
        assert_eq!(
            chains(&g),
            vec!["srcx1", "ax1", "bx1"],
            "a source with two consumers chains neither"
        );
    }

    #[test]
    fn parallelism_above_max_parallelism_is_rejected_naming_the_operator() {
        let env = StreamEnv::new(Default::default());
        env.add_source("src", || Nothing)
            .map(|x: u64| x)
            .name("m")
            .set_parallelism(200);
        let e = JobGraph::from_stream_graph(&env.into_graph(), 1, 128)
            .err()
            .unwrap();
        assert!(
            e.message.contains("'m'") && e.message.contains("200"),
            "{e}"
        );
    }

    #[test]
    fn default_uids_follow_graph_position_and_user_uids_win() {
        let env = StreamEnv::new(Default::default());
        env.add_source("My Source", || Nothing)
            .map(|x: u64| x)
            .uid("mapper");
        let g = env.into_graph();
        assert_eq!(g.nodes[0].uid, "0-my-source");
        assert_eq!(g.nodes[1].uid, "mapper");
        assert!(g.nodes[1].uid_set_by_user);
    }
}
