//! The Nexmark generator: persons, auctions and bids of an online auction site, after the
//! Nexmark benchmark's generator (Apache Beam's `NexmarkUtils`/`GeneratorConfig`, the one Flink's
//! and RisingWave's Nexmark suites use), written in-tree so that it is small and replayable.
//!
//! Every event is a pure function of its event number `n` ([`event`]): the kind follows the
//! proportions 1 person : 3 auctions : 46 bids in each block of 50 events, ids grow with `n`,
//! and the random fields come from a generator seeded with `n`. Event time is
//! [`NEXMARK_BASE_TIME_MS`] plus `n` × [`NEXMARK_INTER_EVENT_US`] µs (10,000 events per second of
//! event time, Nexmark's default first-event rate), independent of the emission rate, of the
//! parallelism and of restarts.
//!
//! The event space is cut into [`NEXMARK_SPLITS`] splits by offset/step (split `s` holds the
//! events `s, s + SPLITS, s + 2·SPLITS, ...`); subtask `i` of `p` owns the splits `s % p == i` and
//! emits them round-major, so its events come in increasing event time. Each split's position is
//! operator state: a restore continues exactly after the last event emitted before the barrier,
//! at the same or another parallelism. The watermark is the event time of the earliest event the
//! subtask can still emit, minus 1 ms. This source must never emit an event twice or skip one.

use crate::generators::mix64;
use crate::restore::{self, Tagged};
use crate::throttle::Throttle;
use eddy_runtime::data::now_millis;
use eddy_runtime::snapshot::{OperatorSnapshot, SnapshotWriter};
use eddy_runtime::{JobError, Output, Result, Source, SourceStatus, TaskInfo, Timestamp};
use serde::{Deserialize, Serialize};

/// Operator-state name of the split positions.
pub const STATE_NAME: &str = "nexmark-positions";
/// Event time of event 0: 2024-01-01T00:00:00Z.
pub const NEXMARK_BASE_TIME_MS: Timestamp = 1_704_067_200_000;
/// Event time between two events, in µs (Nexmark's default: 10,000 events/s).
pub const NEXMARK_INTER_EVENT_US: u64 = 100;
/// Fixed splits of the event space; the source's parallelism must not exceed it.
pub const NEXMARK_SPLITS: u64 = 1024;

const PERSON_PROPORTION: u64 = 1;
const AUCTION_PROPORTION: u64 = 3;
const TOTAL_PROPORTION: u64 = 50;
const FIRST_PERSON_ID: u64 = 1000;
const FIRST_AUCTION_ID: u64 = 1000;
/// Categories are `FIRST_CATEGORY_ID .. FIRST_CATEGORY_ID + NUM_CATEGORIES`.
pub const FIRST_CATEGORY_ID: u64 = 10;
const NUM_CATEGORIES: u64 = 5;
const NUM_ACTIVE_PEOPLE: u64 = 1000;
const NUM_IN_FLIGHT_AUCTIONS: u64 = 100;
const PERSON_ID_LEAD: u64 = 10;
const AUCTION_ID_LEAD: u64 = 10;
const HOT_AUCTION_RATIO: u64 = 2;
const HOT_SELLER_RATIO: u64 = 4;
const HOT_BIDDER_RATIO: u64 = 4;
const AVG_PERSON_BYTES: usize = 200;
const AVG_AUCTION_BYTES: usize = 500;
const AVG_BID_BYTES: usize = 100;

const US_STATES: &[&str] = &["AZ", "CA", "ID", "OR", "WA", "WY"];
const US_CITIES: &[&str] = &[
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
    "Bend",
    "Redmond",
    "Seattle",
    "Kent",
    "Cheyenne",
];
const FIRST_NAMES: &[&str] = &[
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter",
];
const LAST_NAMES: &[&str] = &[
    "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris",
];
const CHANNELS: &[&str] = &["Google", "Facebook", "Baidu", "Apple"];

/// A new user of the site.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Person {
    pub id: u64,
    pub name: String,
    pub email_address: String,
    pub credit_card: String,
    pub city: String,
    pub state: String,
    /// Event time, ms since the Unix epoch.
    pub date_time: Timestamp,
    pub extra: String,
}

/// An item put up for auction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Auction {
    pub id: u64,
    pub item_name: String,
    pub description: String,
    pub initial_bid: u64,
    pub reserve: u64,
    pub date_time: Timestamp,
    /// End of the auction (event time).
    pub expires: Timestamp,
    /// A person id.
    pub seller: u64,
    pub category: u64,
    pub extra: String,
}

/// A bid on an auction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bid {
    pub auction: u64,
    /// A person id.
    pub bidder: u64,
    pub price: u64,
    pub channel: String,
    pub url: String,
    pub date_time: Timestamp,
    pub extra: String,
}

/// One Nexmark event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Event {
    Person(Person),
    Auction(Auction),
    Bid(Bid),
}

impl Event {
    /// Event time, ms since the Unix epoch.
    #[inline]
    pub fn timestamp(&self) -> Timestamp {
        match self {
            Event::Person(p) => p.date_time,
            Event::Auction(a) => a.date_time,
            Event::Bid(b) => b.date_time,
        }
    }
}

/// Event time of event `n`.
#[inline]
pub fn event_timestamp(n: u64) -> Timestamp {
    NEXMARK_BASE_TIME_MS + (n * NEXMARK_INTER_EVENT_US / 1000) as Timestamp
}

/// A small deterministic generator (xorshift64*), seeded per event.
struct Rng(u64);

impl Rng {
    fn new(n: u64) -> Rng {
        Rng(mix64(n ^ 0x4E45_584D_4152_4B00) | 1)
    }
    #[inline]
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..bound` (`bound > 0`).
    #[inline]
    fn below(&mut self, bound: u64) -> u64 {
        ((self.next() as u128 * bound as u128) >> 64) as u64
    }
    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len() as u64) as usize]
    }
    /// `len` lowercase letters appended to `s`.
    /// Twelve letters per random word, written a word's worth at a time (a `char` push per
    /// letter cost a fifth of a bid's generation).
    fn letters(&mut self, s: &mut String, len: usize) {
        let mut left = len;
        let mut buf = [0u8; 12];
        while left > 0 {
            let n = left.min(12);
            let mut bits = self.next();
            for b in &mut buf[..n] {
                *b = b'a' + ((bits & 31) % 26) as u8;
                bits >>= 5;
            }
            s.push_str(std::str::from_utf8(&buf[..n]).expect("ASCII letters"));
            left -= n;
        }
    }
    fn string(&mut self, len: usize) -> String {
        let mut s = String::with_capacity(len);
        self.letters(&mut s, len);
        s
    }
    /// Padding that brings an event of `current` bytes to about `average` bytes (Beam's
    /// `nextExtra`).
    fn extra(&mut self, current: usize, average: usize) -> String {
        if current > average {
            return String::new();
        }
        let delta = average - current;
        let low = delta * 4 / 5;
        let len = low + self.below((delta - low + 1) as u64 * 2) as usize;
        self.string(len.min(delta * 2))
    }
    /// Nexmark's price: 10^(U·6) × 100, rounded.
    fn price(&mut self) -> u64 {
        (10f64.powf(self.unit() * 6.0) * 100.0).round() as u64
    }
}

/// The person id (0-based) of the last person generated at or before event `n`.
fn last_base0_person_id(n: u64) -> u64 {
    let epoch = n / TOTAL_PROPORTION;
    // Beam's formula, for any proportions (with one person per block the offset is always 0).
    #[allow(clippy::unnecessary_min_or_max)]
    let offset = (n % TOTAL_PROPORTION).min(PERSON_PROPORTION - 1);
    epoch * PERSON_PROPORTION + offset
}

/// The auction id (0-based) of the last auction generated at or before event `n`.
fn last_base0_auction_id(n: u64) -> u64 {
    let epoch = n / TOTAL_PROPORTION;
    let offset = n % TOTAL_PROPORTION;
    let offset = if offset < PERSON_PROPORTION {
        // No auction yet in this epoch: the last one of the previous epoch.
        return (epoch * AUCTION_PROPORTION).saturating_sub(1);
    } else if offset < PERSON_PROPORTION + AUCTION_PROPORTION {
        offset - PERSON_PROPORTION
    } else {
        AUCTION_PROPORTION - 1
    };
    epoch * AUCTION_PROPORTION + offset
}

/// A recent or slightly future person (Beam's `nextBase0PersonId`).
fn next_base0_person_id(n: u64, rng: &mut Rng) -> u64 {
    let people = last_base0_person_id(n) + 1;
    let active = people.min(NUM_ACTIVE_PEOPLE);
    people - active + rng.below(active + PERSON_ID_LEAD)
}

/// A recent or slightly future auction (Beam's `nextBase0AuctionId`).
fn next_base0_auction_id(n: u64, rng: &mut Rng) -> u64 {
    let max = last_base0_auction_id(n);
    let min = max.saturating_sub(NUM_IN_FLIGHT_AUCTIONS);
    min + rng.below(max - min + 1 + AUCTION_ID_LEAD)
}

/// Event number `n` (deterministic: the same `n` always gives the same event).
pub fn event(n: u64) -> Event {
    let ts = event_timestamp(n);
    let mut rng = Rng::new(n);
    let offset = n % TOTAL_PROPORTION;
    if offset < PERSON_PROPORTION {
        let id = last_base0_person_id(n) + FIRST_PERSON_ID;
        let name = format!("{} {}", rng.pick(FIRST_NAMES), rng.pick(LAST_NAMES));
        let mut email_address = rng.string(7);
        email_address.push('@');
        rng.letters(&mut email_address, 5);
        email_address.push_str(".com");
        let cc = rng.below(10_000_000_000_000_000);
        let credit_card = format!(
            "{:04} {:04} {:04} {:04}",
            cc / 1_000_000_000_000,
            cc / 100_000_000 % 10_000,
            cc / 10_000 % 10_000,
            cc % 10_000
        );
        let city = rng.pick(US_CITIES).to_string();
        let state = rng.pick(US_STATES).to_string();
        let size = 8 + name.len() + email_address.len() + credit_card.len() + city.len() + 2 + 8;
        let extra = rng.extra(size, AVG_PERSON_BYTES);
        Event::Person(Person {
            id,
            name,
            email_address,
            credit_card,
            city,
            state,
            date_time: ts,
            extra,
        })
    } else if offset < PERSON_PROPORTION + AUCTION_PROPORTION {
        let id = last_base0_auction_id(n) + FIRST_AUCTION_ID;
        let seller = if rng.below(HOT_SELLER_RATIO) > 0 {
            last_base0_person_id(n) / HOT_SELLER_RATIO * HOT_SELLER_RATIO
        } else {
            next_base0_person_id(n, &mut rng)
        } + FIRST_PERSON_ID;
        let category = FIRST_CATEGORY_ID + rng.below(NUM_CATEGORIES);
        let initial_bid = rng.price();
        let reserve = initial_bid + rng.price();
        // The auction stays open about as long as it takes to generate the auctions in flight.
        let events_for_auctions = NUM_IN_FLIGHT_AUCTIONS * TOTAL_PROPORTION / AUCTION_PROPORTION;
        let horizon = event_timestamp(n + events_for_auctions) - ts;
        let expires = ts + 1 + rng.below((horizon * 2).max(1) as u64) as Timestamp;
        let item_name = rng.string(20);
        let description = rng.string(100);
        let size = 8 + item_name.len() + description.len() + 8 + 8 + 8 + 8 + 8;
        let extra = rng.extra(size, AVG_AUCTION_BYTES);
        Event::Auction(Auction {
            id,
            item_name,
            description,
            initial_bid,
            reserve,
            date_time: ts,
            expires,
            seller,
            category,
            extra,
        })
    } else {
        let auction = if rng.below(HOT_AUCTION_RATIO) > 0 {
            last_base0_auction_id(n) / HOT_AUCTION_RATIO * HOT_AUCTION_RATIO
        } else {
            next_base0_auction_id(n, &mut rng)
        } + FIRST_AUCTION_ID;
        let bidder = if rng.below(HOT_BIDDER_RATIO) > 0 {
            last_base0_person_id(n) / HOT_BIDDER_RATIO * HOT_BIDDER_RATIO + 1
        } else {
            next_base0_person_id(n, &mut rng)
        } + FIRST_PERSON_ID;
        let price = rng.price();
        let c = rng.below(CHANNELS.len() as u64 + 1) as usize;
        let (channel, url) = if c < CHANNELS.len() {
            (
                CHANNELS[c].to_string(),
                format!("https://www.nexmark.com/{}/item.htm?query=1", rng.string(5)),
            )
        } else {
            let ch = format!("channel-{}", rng.below(10_000));
            let url = format!("https://www.nexmark.com/{}/{}", rng.string(5), ch);
            (ch, url)
        };
        let size = 8 + 8 + 8 + channel.len() + url.len() + 8;
        let extra = rng.extra(size, AVG_BID_BYTES);
        Event::Bid(Bid {
            auction,
            bidder,
            price,
            channel,
            url,
            date_time: ts,
            extra,
        })
    }
}

/// Generates Nexmark [`Event`]s `0..events`. One clone per subtask.
#[derive(Clone, Debug)]
pub struct NexmarkSource {
    /// Events in total (0 = unbounded).
    events: u64,
    rate: f64,
    run: Option<NexmarkRun>,
}

#[derive(Clone, Debug)]
struct NexmarkRun {
    subtask: u32,
    parallelism: u32,
    splits: Vec<SplitPosition>,
    /// The round being emitted; `cursor` indexes `splits`.
    round: u64,
    cursor: usize,
    throttle: Throttle,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
struct SplitPosition {
    split: u64,
    /// The round of this split's next event: event `split + next_round * NEXMARK_SPLITS`.
    next_round: u64,
}

/// What is saved at a checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct NexmarkPositions {
    subtask: u32,
    parallelism: u32,
    splits: Vec<SplitPosition>,
}

impl Tagged for NexmarkPositions {
    fn writer(&self) -> (u32, u32) {
        (self.subtask, self.parallelism)
    }
}

impl NexmarkSource {
    /// `events` in total (0 = unbounded), `rate` events per second for the whole job (0 = as
    /// fast as possible).
    pub fn new(events: u64, rate: f64) -> Self {
        NexmarkSource {
            events,
            rate,
            run: None,
        }
    }

    #[inline]
    fn exhausted(&self, s: &SplitPosition) -> bool {
        self.events > 0 && s.split + s.next_round * NEXMARK_SPLITS >= self.events
    }

    /// Event time of the earliest event the subtask may still emit (`None`: none left).
    fn earliest_pending(&self, run: &NexmarkRun) -> Option<Timestamp> {
        run.splits
            .iter()
            .filter(|s| !self.exhausted(s))
            .map(|s| event_timestamp(s.split + s.next_round * NEXMARK_SPLITS))
            .min()
    }
}

impl Source for NexmarkSource {
    type Out = Event;

    fn open(&mut self, info: &TaskInfo, restored: Option<&OperatorSnapshot>) -> Result<()> {
        let p = info.parallelism.max(1);
        if p as u64 > NEXMARK_SPLITS {
            return Err(JobError::new(format!(
                "nexmark source: parallelism {p} is above its {NEXMARK_SPLITS} splits"
            )));
        }
        let mut splits: Vec<SplitPosition> = (0..NEXMARK_SPLITS)
            .filter(|s| s % p as u64 == info.subtask_index as u64)
            .map(|split| SplitPosition {
                split,
                next_round: 0,
            })
            .collect();
        let entries: Vec<NexmarkPositions> = restore::decode_entries(restored, STATE_NAME)?;
        if !entries.is_empty() {
            let own = restore::own_entry(&entries, info);
            for s in splits.iter_mut() {
                let saved = match own {
                    Some(e) => e.splits.iter().find(|x| x.split == s.split),
                    None => entries
                        .iter()
                        .flat_map(|e| &e.splits)
                        .find(|x| x.split == s.split),
                };
                match saved {
                    Some(x) => *s = *x,
                    None => {
                        return Err(JobError::new(format!(
                            "restored operator state '{STATE_NAME}' has no position for split {}",
                            s.split
                        )))
                    }
                }
            }
        }
        let round = splits.iter().map(|s| s.next_round).min().unwrap_or(0);
        let share = self.rate * splits.len() as f64 / NEXMARK_SPLITS as f64;
        self.run = Some(NexmarkRun {
            subtask: info.subtask_index,
            parallelism: p,
            splits,
            round,
            cursor: 0,
            throttle: Throttle::new(share),
        });
        Ok(())
    }

    fn poll_next(&mut self, out: &mut Output<Event>, max_records: usize) -> Result<SourceStatus> {
        let Some(mut run) = self.run.take() else {
            return Err(JobError::new("nexmark source polled before open"));
        };
        let status = self.poll_run(&mut run, out, max_records);
        self.run = Some(run);
        Ok(status)
    }

    fn snapshot_state(&mut self, _checkpoint_id: u64, writer: &mut SnapshotWriter) -> Result<()> {
        let Some(run) = self.run.as_ref() else {
            return Ok(());
        };
        let positions = NexmarkPositions {
            subtask: run.subtask,
            parallelism: run.parallelism,
            splits: run.splits.clone(),
        };
        writer.put_operator_state(STATE_NAME, restore::encode(STATE_NAME, &positions)?);
        Ok(())
    }
}

impl NexmarkSource {
    fn poll_run(
        &self,
        run: &mut NexmarkRun,
        out: &mut Output<Event>,
        max_records: usize,
    ) -> SourceStatus {
        // Every subtask owns splits (parallelism <= NEXMARK_SPLITS), so only a bounded source
        // runs out.
        if self.earliest_pending(run).is_none() {
            return SourceStatus::Finished;
        }
        let limit = match run.throttle.allowance(now_millis(), max_records) {
            Ok(n) => n,
            Err(until) => return SourceStatus::IdleUntil(until),
        };
        out.records.reserve(limit);
        let mut emitted = 0;
        while emitted < limit {
            if run.cursor >= run.splits.len() {
                run.round += 1;
                run.cursor = 0;
                if self.events > 0 && run.round * NEXMARK_SPLITS >= self.events {
                    break;
                }
                continue;
            }
            let round = run.round;
            let s = run.splits[run.cursor];
            run.cursor += 1;
            if s.next_round != round || self.exhausted(&s) {
                continue;
            }
            run.splits[run.cursor - 1].next_round += 1;
            out.records.push(event(s.split + round * NEXMARK_SPLITS));
            emitted += 1;
        }
        run.throttle.record(emitted);
        match self.earliest_pending(run) {
            Some(ts) => {
                if emitted > 0 {
                    out.emit_watermark(ts - 1);
                }
                SourceStatus::More
            }
            None => SourceStatus::Finished,
        }
    }
}

#[cfg(test)]
mod letter_tests {
    use super::Rng;

    /// The letters of the first version (a `char` per five bits, a new word every twelve): the
    /// events of a given `n` must not change with the faster writing.
    fn letters_one_by_one(rng: &mut Rng, len: usize) -> String {
        let (mut s, mut left, mut bits) = (String::new(), 0, 0u64);
        for _ in 0..len {
            if left == 0 {
                bits = rng.next();
                left = 12;
            }
            s.push((b'a' + ((bits & 31) % 26) as u8) as char);
            bits >>= 5;
            left -= 1;
        }
        s
    }

    #[test]
    fn letters_are_those_of_the_first_version() {
        for seed in [0u64, 1, 77, 123_456_789] {
            for len in 0..60 {
                let (mut a, mut b) = (Rng::new(seed), Rng::new(seed));
                let mut s = String::from("x");
                a.letters(&mut s, len);
                assert_eq!(
                    &s[1..],
                    letters_one_by_one(&mut b, len),
                    "seed {seed} len {len}"
                );
                assert_eq!(a.next(), b.next(), "the same draws were used");
            }
        }
    }
}
