//! Bounded inputs: the final checkpoint is triggered as soon as every source's data ended.
//!
//! A source task whose input ended (FLIP-147) emits nothing more and waits for a checkpoint
//! covering its output before it ends; so does every task downstream, and sinks commit only
//! through that checkpoint. Flink triggers that final checkpoint on the periodic schedule; Eddy
//! triggers it at once when the last source reports its end of data, so a bounded job ends in
//! about the time of one checkpoint instead of up to a whole interval later. The rules of the
//! schedule otherwise hold: never while not every task runs, nor beyond max-concurrent (a
//! checkpoint in flight completes first, then the final one is triggered), nor before min-pause
//! after the last one ended, nor after a stop-with-savepoint. Only the first trigger after the
//! end is brought forward: should that checkpoint fail, the next one is periodic again (no
//! trigger loop against a failing storage).

use super::CheckpointCoordinator;
use crate::ids::ExecutionVertexId;
use std::collections::BTreeSet;

/// Which sources reported the end of their data, and whether the final checkpoint is due.
#[derive(Debug, Default)]
pub(super) struct EndOfInput {
    ended: BTreeSet<ExecutionVertexId>,
    /// Every source ended and no checkpoint was triggered since: one is due now.
    final_due: bool,
}

impl CheckpointCoordinator {
    /// Source `task` emitted its last record (its input ended, its operators finished) and waits
    /// for its final checkpoint. Once every source did, the next checkpoint is due at once;
    /// [`Self::tick`] triggers it (see the module documentation).
    pub fn source_ended(&mut self, task: ExecutionVertexId) {
        if !self.all_triggered.contains(&task) || !self.end_of_input.ended.insert(task) {
            return;
        }
        if self
            .tasks_to_trigger
            .iter()
            .all(|t| self.end_of_input.ended.contains(t))
        {
            self.end_of_input.final_due = true;
        }
    }

    /// The periodic due time, brought forward to 0 while the final checkpoint is due.
    pub(super) fn due_after_end_of_input(&self, periodic_due: u64) -> u64 {
        if self.end_of_input.final_due {
            0
        } else {
            periodic_due
        }
    }

    /// A checkpoint (or savepoint) was triggered: it is the final one of every ended source.
    pub(super) fn end_of_input_triggered(&mut self) {
        self.end_of_input.final_due = false;
    }

    /// `task` is deployed again from a snapshot: its input has not ended any more.
    pub(super) fn end_of_input_redeployed(&mut self, task: ExecutionVertexId) {
        self.end_of_input.ended.remove(&task);
        self.end_of_input.final_due = false;
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{complete, ev, fail, running, settings, trigger_at, triggered};
    use super::super::*;

    const S: u64 = 1000;

    #[test]
    fn final_checkpoint_is_triggered_as_soon_as_every_source_ended() {
        let mut c = running(settings());
        assert_eq!(c.next_deadline(), Some(10 * S));
        c.source_ended(ev(0, 0));
        assert!(c.tick(2 * S).is_empty(), "one source still runs");
        assert_eq!(c.next_deadline(), Some(10 * S));
        c.source_ended(ev(0, 1));
        assert_eq!(c.next_deadline(), Some(0));
        assert_eq!(trigger_at(&mut c, 3 * S), 1);
        complete(&mut c, 1, 3 * S + 5);
        // Only the first trigger after the end is brought forward.
        assert_eq!(c.next_deadline(), Some(13 * S));
        assert!(c.tick(4 * S).is_empty());
    }

    #[test]
    fn a_checkpoint_in_flight_at_the_end_completes_before_the_final_one_is_triggered() {
        let mut c = running(settings());
        assert_eq!(trigger_at(&mut c, 10 * S), 1);
        c.source_ended(ev(0, 0));
        c.source_ended(ev(0, 1));
        assert!(
            c.tick(11 * S).is_empty(),
            "max-concurrent 1: {:?}",
            c.pending_ids()
        );
        complete(&mut c, 1, 12 * S);
        assert_eq!(trigger_at(&mut c, 12 * S), 2);
    }

    #[test]
    fn the_final_checkpoint_keeps_min_pause() {
        let mut c = running(CheckpointingSettings {
            min_pause: Duration::from_secs(5),
            ..settings()
        });
        assert_eq!(trigger_at(&mut c, 10 * S), 1);
        complete(&mut c, 1, 11 * S);
        c.source_ended(ev(0, 0));
        c.source_ended(ev(0, 1));
        assert_eq!(c.next_deadline(), Some(16 * S));
        assert!(c.tick(15 * S).is_empty());
        assert_eq!(trigger_at(&mut c, 16 * S), 2);
    }

    #[test]
    fn a_failed_final_checkpoint_is_retried_on_the_periodic_schedule() {
        let mut c = running(settings());
        c.source_ended(ev(0, 0));
        c.source_ended(ev(0, 1));
        assert_eq!(trigger_at(&mut c, S), 1);
        fail(&mut c, 1, 2 * S);
        assert!(c.tick(3 * S).is_empty(), "no trigger loop after a failure");
        assert_eq!(trigger_at(&mut c, 11 * S), 2);
    }

    #[test]
    fn nothing_is_brought_forward_before_every_task_runs_or_after_a_redeploy() {
        let mut c = CheckpointCoordinator::new(CoordinatorConfig {
            job_id: JobId(1),
            settings: settings(),
            tasks_to_trigger: BTreeSet::from([ev(0, 0), ev(0, 1)]),
            tasks_to_ack: BTreeSet::from([ev(0, 0), ev(0, 1), ev(1, 0)]),
            first_checkpoint_id: 1,
        });
        c.source_ended(ev(0, 0));
        c.source_ended(ev(0, 1));
        assert!(triggered(&c.tick(S)).is_empty(), "tasks not running yet");
        c.tasks_running(2 * S);
        assert_eq!(trigger_at(&mut c, 2 * S), 1);

        // A restart: the sources run again from a snapshot, their end is not reached.
        let mut c = running(settings());
        c.source_ended(ev(0, 0));
        c.source_ended(ev(0, 1));
        c.job_restarting(S);
        c.tasks_redeployed([ev(0, 0), ev(0, 1)]);
        c.tasks_running(2 * S);
        assert!(c.tick(3 * S).is_empty());
        assert_eq!(c.next_deadline(), Some(12 * S));
        // A source not in the trigger set (or a stray report) changes nothing.
        c.source_ended(ev(1, 0));
        c.source_ended(ev(0, 0));
        assert_eq!(c.next_deadline(), Some(12 * S));
    }
}
