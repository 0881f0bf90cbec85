//! The car-speed generator of the top-speed-windowing job (after Flink's TopSpeedWindowing
//! example): every round, each car's speed goes up or down by 5 km/h within `0..=200`, its
//! distance grows by the distance driven in one 100 ms step, and it emits a [`CarEvent`].
//!
//! Deterministic: a speed change depends only on (seed, car, round), timestamps are
//! `CAR_EPOCH_MS + round * CAR_STEP_MS`, so the records do not depend on timing, parallelism or
//! restarts. Subtask `i` of `p` owns the cars `c % p == i` and emits round-major; it emits a
//! watermark of its highest timestamp minus 1 ms (timestamps are monotonous per subtask). Each
//! car's position is operator state. This source must never emit an event twice or skip one.

use crate::generators::mix64;
use crate::restore::{self, Tagged};
use crate::throttle::Throttle;
use eddy_runtime::data::{now_millis, MAX_WATERMARK};
use eddy_runtime::snapshot::{OperatorSnapshot, SnapshotWriter};
use eddy_runtime::{JobError, Output, Result, Source, SourceStatus, TaskInfo, Timestamp};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Operator-state name of the cars' positions.
pub const STATE_NAME: &str = "car-positions";
/// Event time of round 0: 2024-01-01T00:00:00Z.
pub const CAR_EPOCH_MS: Timestamp = 1_704_067_200_000;
/// Event time between two rounds.
pub const CAR_STEP_MS: Timestamp = 100;
pub const CAR_INITIAL_SPEED: u32 = 50;
pub const CAR_MAX_SPEED: u32 = 200;
pub const CAR_SPEED_STEP: u32 = 5;
pub const DEFAULT_CAR_SEED: u64 = 42;

/// One car's report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CarEvent {
    pub car_id: u32,
    /// km/h.
    pub speed: u32,
    /// Metres driven since the start.
    pub distance: f64,
    /// Event time, ms since the Unix epoch.
    pub timestamp: i64,
}

impl fmt::Display for CarEvent {
    /// `car_id,speed,distance,timestamp` (distance with two decimals).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{},{},{:.2},{}",
            self.car_id, self.speed, self.distance, self.timestamp
        )
    }
}

/// Generates [`CarEvent`]s. One clone per subtask.
#[derive(Clone, Debug)]
pub struct CarSource {
    cars: u32,
    rate: f64,
    events: u64,
    seed: u64,
    run: Option<CarRun>,
}

#[derive(Clone, Debug)]
struct CarRun {
    subtask: u32,
    parallelism: u32,
    owned: Vec<CarState>,
    /// The round being emitted; `cursor` indexes `owned`.
    round: u64,
    cursor: usize,
    throttle: Throttle,
    idle_watermark_sent: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct CarState {
    car_id: u32,
    /// The round of this car's next event.
    next_round: u64,
    speed: u32,
    distance: f64,
}

/// What is saved at a checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct CarPositions {
    subtask: u32,
    parallelism: u32,
    cars: Vec<CarState>,
}

impl Tagged for CarPositions {
    fn writer(&self) -> (u32, u32) {
        (self.subtask, self.parallelism)
    }
}

impl CarSource {
    /// `cars` cars, `rate` events per second for the whole job (0 = as fast as possible),
    /// `events` events in total (0 = unbounded): event `round * cars + car_id` is emitted iff it
    /// is below `events`.
    pub fn new(cars: u32, rate: f64, events: u64) -> Self {
        CarSource {
            cars,
            rate,
            events,
            seed: DEFAULT_CAR_SEED,
            run: None,
        }
    }

    /// Another sequence of speed changes (default [`DEFAULT_CAR_SEED`]).
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Rounds car `car_id` takes part in (`u64::MAX` when unbounded).
    fn rounds_of(&self, car_id: u32) -> u64 {
        if self.events == 0 {
            return u64::MAX;
        }
        let (c, n) = (car_id as u64, self.cars.max(1) as u64);
        if c >= self.events {
            0
        } else {
            (self.events - c).div_ceil(n)
        }
    }

    fn exhausted(&self, car: &CarState) -> bool {
        car.next_round >= self.rounds_of(car.car_id)
    }
}

impl Source for CarSource {
    type Out = CarEvent;

    fn open(&mut self, info: &TaskInfo, restored: Option<&OperatorSnapshot>) -> Result<()> {
        let p = info.parallelism.max(1);
        let mut owned: Vec<CarState> = (0..self.cars)
            .filter(|c| c % p == info.subtask_index)
            .map(|car_id| CarState {
                car_id,
                next_round: 0,
                speed: CAR_INITIAL_SPEED,
                distance: 0.0,
            })
            .collect();
        let entries: Vec<CarPositions> = restore::decode_entries(restored, STATE_NAME)?;
        if !entries.is_empty() {
            // Own entry, or the union of all after a rescale: either way, take each owned car's
            // state from whichever entry holds it.
            let own = restore::own_entry(&entries, info);
            for car in owned.iter_mut() {
                let saved = match own {
                    Some(e) => e.cars.iter().find(|c| c.car_id == car.car_id),
                    None => entries
                        .iter()
                        .flat_map(|e| &e.cars)
                        .find(|c| c.car_id == car.car_id),
                };
                match saved {
                    Some(s) => *car = s.clone(),
                    None => {
                        return Err(JobError::new(format!(
                            "restored operator state '{STATE_NAME}' has no position for car {}",
                            car.car_id
                        )))
                    }
                }
            }
        }
        let round = owned.iter().map(|c| c.next_round).min().unwrap_or(0);
        let share = if self.cars == 0 {
            0.0
        } else {
            self.rate * owned.len() as f64 / self.cars as f64
        };
        self.run = Some(CarRun {
            subtask: info.subtask_index,
            parallelism: p,
            owned,
            round,
            cursor: 0,
            throttle: Throttle::new(share),
            idle_watermark_sent: false,
        });
        Ok(())
    }

    fn poll_next(
        &mut self,
        out: &mut Output<CarEvent>,
        max_records: usize,
    ) -> Result<SourceStatus> {
        let Some(mut run) = self.run.take() else {
            return Err(JobError::new("car source polled before open"));
        };
        let status = self.poll_run(&mut run, out, max_records);
        self.run = Some(run);
        Ok(status)
    }

    fn snapshot_state(&mut self, _checkpoint_id: u64, writer: &mut SnapshotWriter) -> Result<()> {
        let Some(run) = self.run.as_ref() else {
            return Ok(());
        };
        let positions = CarPositions {
            subtask: run.subtask,
            parallelism: run.parallelism,
            cars: run.owned.clone(),
        };
        writer.put_operator_state(STATE_NAME, restore::encode(STATE_NAME, &positions)?);
        Ok(())
    }
}

impl CarSource {
    fn poll_run(
        &self,
        run: &mut CarRun,
        out: &mut Output<CarEvent>,
        max_records: usize,
    ) -> SourceStatus {
        if run.owned.iter().all(|c| self.exhausted(c)) {
            if self.events > 0 {
                return SourceStatus::Finished;
            }
            // Unbounded but owning no car: it will never emit, so it must not hold back event
            // time downstream; it stays alive so checkpoints go on.
            if !run.idle_watermark_sent {
                run.idle_watermark_sent = true;
                out.emit_watermark(MAX_WATERMARK);
            }
            return SourceStatus::IdleUntil(now_millis() + 1000);
        }
        let limit = match run.throttle.allowance(now_millis(), max_records) {
            Ok(n) => n,
            Err(until) => return SourceStatus::IdleUntil(until),
        };
        out.records.reserve(limit);
        let mut emitted = 0;
        let mut max_ts = None;
        while emitted < limit {
            if run.cursor >= run.owned.len() {
                run.round += 1;
                run.cursor = 0;
                if run.owned.iter().all(|c| self.exhausted(c)) {
                    break;
                }
                continue;
            }
            let round = run.round;
            let exhausted = self.exhausted(&run.owned[run.cursor]);
            let car = &mut run.owned[run.cursor];
            run.cursor += 1;
            if car.next_round != round || exhausted {
                continue;
            }
            let up = mix64(self.seed ^ mix64(((car.car_id as u64) << 40) ^ round)) & 1 == 1;
            car.speed = if up {
                (car.speed + CAR_SPEED_STEP).min(CAR_MAX_SPEED)
            } else {
                car.speed.saturating_sub(CAR_SPEED_STEP)
            };
            // km/h → m/s, times the step in seconds.
            car.distance += car.speed as f64 / 3.6 * (CAR_STEP_MS as f64 / 1000.0);
            car.next_round += 1;
            let timestamp = CAR_EPOCH_MS + round as i64 * CAR_STEP_MS;
            out.records.push(CarEvent {
                car_id: car.car_id,
                speed: car.speed,
                distance: car.distance,
                timestamp,
            });
            max_ts = Some(timestamp);
            emitted += 1;
        }
        run.throttle.record(emitted);
        if let Some(ts) = max_ts {
            out.emit_watermark(ts - 1);
        }
        if self.events > 0 && run.owned.iter().all(|c| self.exhausted(c)) {
            SourceStatus::Finished
        } else {
            SourceStatus::More
        }
    }
}
