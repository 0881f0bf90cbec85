//! The resource manager's slot pool: which TaskManager offers how many slots and which job holds
//! each one. Slots of a job are spread over TaskManagers round-robin, so a job of parallelism p
//! on n TaskManagers loses as few subtasks as possible with one TaskManager.
//!
//! Sans-IO and synchronous: the JobManager shell registers and removes TaskManagers as their
//! connections come and go; this file never touches a socket. It keeps no persistent state: a
//! new leader rebuilds it from the TaskManagers' registrations.

use crate::jobmaster::SlotRef;
use eddy_core::JobId;
use std::collections::BTreeMap;

struct Offered {
    data_address: String,
    /// Per slot: the job holding it.
    slots: Vec<Option<JobId>>,
}

#[derive(Default)]
pub struct SlotPool {
    tms: BTreeMap<String, Offered>,
}

impl SlotPool {
    /// A TaskManager registered (again: its old slots are forgotten).
    pub fn add_taskmanager(&mut self, tm_id: &str, data_address: &str, slots: u32) {
        self.tms.insert(
            tm_id.to_string(),
            Offered {
                data_address: data_address.to_string(),
                slots: vec![None; slots as usize],
            },
        );
    }

    /// A TaskManager is gone, with its slots; false if it was not registered.
    pub fn remove_taskmanager(&mut self, tm_id: &str) -> bool {
        self.tms.remove(tm_id).is_some()
    }

    pub fn clear(&mut self) {
        self.tms.clear();
    }

    pub fn contains(&self, tm_id: &str) -> bool {
        self.tms.contains_key(tm_id)
    }

    /// Whether any job holds a slot of `tm_id`.
    pub fn holds_any_job(&self, tm_id: &str) -> bool {
        self.tms
            .get(tm_id)
            .is_some_and(|t| t.slots.iter().any(|s| s.is_some()))
    }

    /// (total, free) slots of `tm_id`.
    pub fn counts(&self, tm_id: &str) -> (u32, u32) {
        self.tms.get(tm_id).map_or((0, 0), |t| {
            (
                t.slots.len() as u32,
                t.slots.iter().filter(|s| s.is_none()).count() as u32,
            )
        })
    }

    pub fn free(&self) -> usize {
        self.tms
            .values()
            .map(|t| t.slots.iter().filter(|s| s.is_none()).count())
            .sum()
    }

    /// Takes `need` free slots for `job`, one per TaskManager in turn; `None` (and nothing
    /// taken) when fewer are free.
    pub fn allocate(&mut self, job: JobId, need: usize) -> Option<Vec<SlotRef>> {
        if self.free() < need {
            return None;
        }
        let mut picked = Vec::with_capacity(need);
        while picked.len() < need {
            for (tm_id, tm) in self.tms.iter_mut() {
                if picked.len() == need {
                    break;
                }
                if let Some(slot) = tm.slots.iter_mut().find(|s| s.is_none()) {
                    *slot = Some(job);
                    picked.push(SlotRef {
                        tm_id: tm_id.clone(),
                        data_address: tm.data_address.clone(),
                    });
                }
            }
        }
        Some(picked)
    }

    /// Frees every slot `job` holds.
    pub fn release(&mut self, job: JobId) {
        for tm in self.tms.values_mut() {
            for s in tm.slots.iter_mut() {
                if *s == Some(job) {
                    *s = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_spread_round_robin_and_released_per_job() {
        let mut p = SlotPool::default();
        p.add_taskmanager("a", "a:1", 2);
        p.add_taskmanager("b", "b:1", 2);
        let got = p.allocate(JobId(1), 3).expect("4 free");
        let tms: Vec<&str> = got.iter().map(|s| s.tm_id.as_str()).collect();
        assert_eq!(tms, ["a", "b", "a"]);
        assert_eq!(p.free(), 1);
        assert!(
            p.allocate(JobId(2), 2).is_none(),
            "not enough: nothing taken"
        );
        assert_eq!(p.free(), 1);
        p.release(JobId(1));
        assert_eq!(p.free(), 4);
    }

    #[test]
    fn a_removed_taskmanager_takes_its_slots_and_a_reregistration_starts_empty() {
        let mut p = SlotPool::default();
        p.add_taskmanager("a", "a:1", 2);
        p.allocate(JobId(1), 1).expect("free");
        assert!(p.holds_any_job("a"));
        assert_eq!(p.counts("a"), (2, 1));
        assert!(p.remove_taskmanager("a"));
        assert!(!p.remove_taskmanager("a"));
        assert_eq!(p.free(), 0);
        p.add_taskmanager("a", "a:2", 3);
        assert_eq!(p.counts("a"), (3, 3));
        assert!(!p.holds_any_job("a"));
    }
}
