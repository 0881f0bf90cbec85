//! Failover strategies (`jobmanager.execution.failover-strategy`): which subtasks restart when one
//! fails. Pure graph computation over a small topology description; no IO, no time.
//!
//! A *pipelined region* is a connected component of the execution graph when every exchange is
//! pipelined, which is the case for every streaming exchange. Blocking (batch) exchanges would cut
//! regions; Eddy has none, so region failover restarts the connected component(s) of the failed
//! subtasks. A forward-only job of parallelism p therefore has p regions; one all-to-all exchange
//! (hash, rebalance, broadcast) joins everything it touches into one region.

use crate::ids::ExecutionVertexId;
use eddy_core::settings::FailoverStrategyKind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// How the subtasks of two vertices are connected (Flink's `DistributionPattern`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DistributionPattern {
    /// `forward` (and `rescale`): with equal parallelism subtask i feeds subtask i only; with
    /// different parallelism each subtask feeds a contiguous slice of the other side, as Flink's
    /// POINTWISE does.
    Pointwise,
    /// `hash`, `rebalance`, `broadcast`: every producer subtask feeds every consumer subtask.
    AllToAll,
}

/// One job vertex (a chain of operators) of the topology.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VertexInfo {
    pub parallelism: u32,
}

/// One job edge: vertex indices into [`Topology::vertices`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeInfo {
    pub source: u32,
    pub target: u32,
    pub pattern: DistributionPattern,
}

/// The job graph as the failover strategy sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topology {
    pub vertices: Vec<VertexInfo>,
    pub edges: Vec<EdgeInfo>,
}

/// Why a topology cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    #[error("invalid topology: vertex {vertex} has parallelism 0 (expected >= 1)")]
    ZeroParallelism { vertex: u32 },
    #[error("invalid topology: edge {edge} refers to vertex {vertex}, but there are only {count} vertices")]
    UnknownVertex {
        edge: usize,
        vertex: u32,
        count: usize,
    },
}

impl Topology {
    /// Checks parallelism and edge endpoints.
    pub fn validate(&self) -> Result<(), TopologyError> {
        for (i, v) in self.vertices.iter().enumerate() {
            if v.parallelism == 0 {
                return Err(TopologyError::ZeroParallelism { vertex: i as u32 });
            }
        }
        for (i, e) in self.edges.iter().enumerate() {
            for vertex in [e.source, e.target] {
                if vertex as usize >= self.vertices.len() {
                    return Err(TopologyError::UnknownVertex {
                        edge: i,
                        vertex,
                        count: self.vertices.len(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Every execution vertex, in order.
    pub fn execution_vertices(&self) -> impl Iterator<Item = ExecutionVertexId> + '_ {
        self.vertices.iter().enumerate().flat_map(|(v, info)| {
            (0..info.parallelism).map(move |s| ExecutionVertexId::new(v as u32, s))
        })
    }

    /// Number of execution vertices.
    pub fn task_count(&self) -> usize {
        self.vertices.iter().map(|v| v.parallelism as usize).sum()
    }
}

/// A set of execution vertices connected by pipelined exchanges: they fail and restart together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipelinedRegion {
    /// Index of the region in [`compute_pipelined_regions`]'s result.
    pub id: usize,
    pub vertices: BTreeSet<ExecutionVertexId>,
}

/// The pipelined regions of a topology, ordered by their smallest execution vertex. Cost is
/// linear in the number of subtasks plus, for pointwise edges, the number of subtask pairs
/// connected (all-to-all edges are not expanded into p×q pairs).
pub fn compute_pipelined_regions(
    topology: &Topology,
) -> Result<Vec<PipelinedRegion>, TopologyError> {
    topology.validate()?;
    let offsets: Vec<usize> = topology
        .vertices
        .iter()
        .scan(0usize, |acc, v| {
            let start = *acc;
            *acc += v.parallelism as usize;
            Some(start)
        })
        .collect();
    let index = |v: u32, s: u32| offsets[v as usize] + s as usize;
    let mut sets = DisjointSets::new(topology.task_count());
    for e in &topology.edges {
        let p = topology.vertices[e.source as usize].parallelism;
        let q = topology.vertices[e.target as usize].parallelism;
        match e.pattern {
            DistributionPattern::AllToAll => {
                let anchor = index(e.source, 0);
                for s in 0..p {
                    sets.union(anchor, index(e.source, s));
                }
                for t in 0..q {
                    sets.union(anchor, index(e.target, t));
                }
            }
            DistributionPattern::Pointwise => {
                for (s, t) in pointwise_pairs(p, q) {
                    sets.union(index(e.source, s), index(e.target, t));
                }
            }
        }
    }
    let mut by_root: std::collections::BTreeMap<usize, BTreeSet<ExecutionVertexId>> =
        std::collections::BTreeMap::new();
    for (i, ev) in topology.execution_vertices().enumerate() {
        by_root.entry(sets.find(i)).or_default().insert(ev);
    }
    let mut regions: Vec<BTreeSet<ExecutionVertexId>> = by_root.into_values().collect();
    regions.sort_by(|a, b| a.first().cmp(&b.first()));
    Ok(regions
        .into_iter()
        .enumerate()
        .map(|(id, vertices)| PipelinedRegion { id, vertices })
        .collect())
}

/// Flink's POINTWISE connection of `p` producer subtasks to `q` consumer subtasks.
fn pointwise_pairs(p: u32, q: u32) -> Vec<(u32, u32)> {
    let (p64, q64) = (u64::from(p), u64::from(q));
    let mut pairs = Vec::new();
    if p == q {
        pairs.extend((0..p).map(|i| (i, i)));
    } else if p > q {
        // Each consumer reads a contiguous slice of producers.
        for t in 0..q64 {
            let start = t * p64 / q64;
            let end = (t + 1) * p64 / q64;
            pairs.extend((start..end).map(|s| (s as u32, t as u32)));
        }
    } else {
        // Each producer feeds a contiguous slice of consumers.
        for s in 0..p64 {
            let start = (s * q64).div_ceil(p64);
            let end = ((s + 1) * q64).div_ceil(p64);
            pairs.extend((start..end).map(|t| (s as u32, t as u32)));
        }
    }
    pairs
}

/// Decides which subtasks to restart for a failure.
#[derive(Clone, Debug)]
pub struct FailoverStrategy {
    kind: FailoverStrategyKind,
    regions: Vec<PipelinedRegion>,
    /// Region index per execution vertex, indexed like `offsets`.
    region_of: Vec<usize>,
    offsets: Vec<usize>,
    parallelism: Vec<u32>,
}

impl FailoverStrategy {
    pub fn new(kind: FailoverStrategyKind, topology: &Topology) -> Result<Self, TopologyError> {
        let regions = compute_pipelined_regions(topology)?;
        let mut offsets = Vec::with_capacity(topology.vertices.len());
        let mut acc = 0;
        for v in &topology.vertices {
            offsets.push(acc);
            acc += v.parallelism as usize;
        }
        let mut region_of = vec![0; acc];
        for r in &regions {
            for ev in &r.vertices {
                region_of[offsets[ev.vertex as usize] + ev.subtask as usize] = r.id;
            }
        }
        Ok(FailoverStrategy {
            kind,
            regions,
            region_of,
            offsets,
            parallelism: topology.vertices.iter().map(|v| v.parallelism).collect(),
        })
    }

    pub fn kind(&self) -> FailoverStrategyKind {
        self.kind
    }

    pub fn regions(&self) -> &[PipelinedRegion] {
        &self.regions
    }

    /// The region holding `task`, or `None` for a task outside the topology.
    pub fn region_of(&self, task: ExecutionVertexId) -> Option<&PipelinedRegion> {
        let p = *self.parallelism.get(task.vertex as usize)?;
        if task.subtask >= p {
            return None;
        }
        let i = self.offsets[task.vertex as usize] + task.subtask as usize;
        self.regions.get(self.region_of[i])
    }

    /// The subtasks to cancel and restart when `failed` fails. `region`: every subtask of the
    /// region holding it; `full`: every subtask. A task outside the topology (a bug in the caller
    /// or a stale report) restarts everything: the safe answer.
    pub fn tasks_to_restart(&self, failed: ExecutionVertexId) -> BTreeSet<ExecutionVertexId> {
        self.tasks_to_restart_all(std::iter::once(failed))
    }

    /// The union for several concurrent failures.
    pub fn tasks_to_restart_all(
        &self,
        failed: impl IntoIterator<Item = ExecutionVertexId>,
    ) -> BTreeSet<ExecutionVertexId> {
        let all = || {
            self.regions
                .iter()
                .flat_map(|r| r.vertices.iter().copied())
                .collect()
        };
        match self.kind {
            FailoverStrategyKind::Full => all(),
            FailoverStrategyKind::Region => {
                let mut out = BTreeSet::new();
                for f in failed {
                    match self.region_of(f) {
                        Some(r) => out.extend(r.vertices.iter().copied()),
                        None => return all(),
                    }
                }
                out
            }
        }
    }
}

/// Union-find with path halving and union by size.
struct DisjointSets {
    parent: Vec<usize>,
    size: Vec<usize>,
}

impl DisjointSets {
    fn new(n: usize) -> Self {
        DisjointSets {
            parent: (0..n).collect(),
            size: vec![1; n],
        }
    }

    fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }

    fn union(&mut self, a: usize, b: usize) {
        let (mut a, mut b) = (self.find(a), self.find(b));
        if a == b {
            return;
        }
        if self.size[a] < self.size[b] {
            std::mem::swap(&mut a, &mut b);
        }
        self.parent[b] = a;
        self.size[a] += self.size[b];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(v: u32, s: u32) -> ExecutionVertexId {
        ExecutionVertexId::new(v, s)
    }

    fn chain(parallelism: &[u32], patterns: &[DistributionPattern]) -> Topology {
        Topology {
            vertices: parallelism
                .iter()
                .map(|&p| VertexInfo { parallelism: p })
                .collect(),
            edges: patterns
                .iter()
                .enumerate()
                .map(|(i, &pattern)| EdgeInfo {
                    source: i as u32,
                    target: i as u32 + 1,
                    pattern,
                })
                .collect(),
        }
    }

    use DistributionPattern::{AllToAll, Pointwise};

    #[test]
    fn forward_only_job_has_one_region_per_subtask_chain() {
        let regions =
            compute_pipelined_regions(&chain(&[4, 4, 4], &[Pointwise, Pointwise])).unwrap();
        assert_eq!(regions.len(), 4);
        for (i, r) in regions.iter().enumerate() {
            let i = i as u32;
            assert_eq!(r.vertices, BTreeSet::from([ev(0, i), ev(1, i), ev(2, i)]));
        }
    }

    #[test]
    fn region_failover_restarts_only_the_failed_chain() {
        let f = FailoverStrategy::new(
            FailoverStrategyKind::Region,
            &chain(&[4, 4, 4], &[Pointwise, Pointwise]),
        )
        .unwrap();
        assert_eq!(
            f.tasks_to_restart(ev(1, 2)),
            BTreeSet::from([ev(0, 2), ev(1, 2), ev(2, 2)])
        );
    }

    #[test]
    fn all_to_all_edge_makes_one_region() {
        let t = chain(&[4, 4, 4], &[Pointwise, AllToAll]);
        let regions = compute_pipelined_regions(&t).unwrap();
        assert_eq!(regions.len(), 1);
        let f = FailoverStrategy::new(FailoverStrategyKind::Region, &t).unwrap();
        assert_eq!(f.tasks_to_restart(ev(0, 0)).len(), 12);
    }

    #[test]
    fn full_failover_restarts_every_task() {
        let t = chain(&[4, 4, 4], &[Pointwise, Pointwise]);
        let f = FailoverStrategy::new(FailoverStrategyKind::Full, &t).unwrap();
        let all: BTreeSet<_> = t.execution_vertices().collect();
        assert_eq!(f.tasks_to_restart(ev(2, 3)), all);
    }

    #[test]
    fn pointwise_with_different_parallelism_groups_contiguous_slices() {
        // 4 -> 2: consumer 0 reads producers 0,1; consumer 1 reads 2,3.
        let regions = compute_pipelined_regions(&chain(&[4, 2], &[Pointwise])).unwrap();
        assert_eq!(regions.len(), 2);
        assert_eq!(
            regions[0].vertices,
            BTreeSet::from([ev(0, 0), ev(0, 1), ev(1, 0)])
        );
        // 2 -> 4: producer 0 feeds consumers 0,1.
        let regions = compute_pipelined_regions(&chain(&[2, 4], &[Pointwise])).unwrap();
        assert_eq!(regions.len(), 2);
        assert_eq!(
            regions[1].vertices,
            BTreeSet::from([ev(0, 1), ev(1, 2), ev(1, 3)])
        );
    }

    #[test]
    fn disconnected_vertices_are_separate_regions() {
        let t = Topology {
            vertices: vec![VertexInfo { parallelism: 2 }, VertexInfo { parallelism: 1 }],
            edges: vec![],
        };
        assert_eq!(compute_pipelined_regions(&t).unwrap().len(), 3);
    }

    #[test]
    fn concurrent_failures_restart_the_union_of_their_regions() {
        let f = FailoverStrategy::new(FailoverStrategyKind::Region, &chain(&[3, 3], &[Pointwise]))
            .unwrap();
        let set = f.tasks_to_restart_all([ev(0, 0), ev(1, 2)]);
        assert_eq!(
            set,
            BTreeSet::from([ev(0, 0), ev(1, 0), ev(0, 2), ev(1, 2)])
        );
    }

    #[test]
    fn unknown_task_restarts_everything() {
        let f = FailoverStrategy::new(FailoverStrategyKind::Region, &chain(&[2, 2], &[Pointwise]))
            .unwrap();
        assert_eq!(f.tasks_to_restart(ev(0, 9)).len(), 4);
        assert_eq!(f.tasks_to_restart(ev(7, 0)).len(), 4);
    }

    #[test]
    fn invalid_topology_is_rejected_with_the_offending_value() {
        let bad = chain(&[2, 0], &[Pointwise]);
        assert_eq!(
            compute_pipelined_regions(&bad).unwrap_err(),
            TopologyError::ZeroParallelism { vertex: 1 }
        );
        let mut dangling = chain(&[2], &[]);
        dangling.edges.push(EdgeInfo {
            source: 0,
            target: 5,
            pattern: AllToAll,
        });
        let err = FailoverStrategy::new(FailoverStrategyKind::Region, &dangling).unwrap_err();
        assert!(err.to_string().contains("vertex 5"), "{err}");
    }
}
