//! The Nexmark queries q0–q8 (without q6) as built-in jobs `nexmark-q0` … `nexmark-q8`, after
//! the SQL of Flink's Nexmark suite, on the DataStream API over one [`NexmarkSource`] stream.
//!
//! Every query reads the same deterministic event stream (persons, auctions, bids; event time
//! from the generator, watermarks from the source), so its output for `--events N` is a function
//! of `N` and the window sizes only: the tests compare it with a single-threaded reference.
//! Stateful operators carry uids. The semantics of each query are in docs/nexmark.md; the line
//! formats are those of `sink`'s format closures below.

use crate::jobs::sink_lines;
use crate::lines::{csv, push_milli};
use eddy_connectors::generators::nexmark::{Bid, Event};
use eddy_connectors::{BlackholeSink, NexmarkSource};
use eddy_runtime::registry::{JobArgs, JobDefinition, JobRegistry};
use eddy_runtime::state::{ListState, TimeDomain, ValueState};
use eddy_runtime::window::{
    AggregateFunction, SlidingEventTimeWindows, TimeWindow, TumblingEventTimeWindows,
};
use eddy_runtime::{
    Data, DataStream, KeyedContext, KeyedOpenContext, KeyedProcessFunction, Result, StreamEnv,
    Timestamp,
};
use serde::{Deserialize, Serialize};
use std::time::Duration;

const COMMON_ARGS: [&str; 3] = [
    "--events N       events in total (default 1000000; 0 = unbounded)",
    "--rate R         events/s for the whole job (default 0 = unthrottled)",
    "--output DIR     where committed part files go ('-' = stdout, 'blackhole' = discard)",
];

macro_rules! args {
    ($($extra:expr),*) => {
        &[COMMON_ARGS[0], COMMON_ARGS[1], COMMON_ARGS[2] $(, $extra)*]
    };
}

pub(crate) fn register(r: &mut JobRegistry) {
    r.register(JobDefinition {
        name: "nexmark-q0",
        description:
            "Nexmark q0, pass-through: every bid (lines `auction,bidder,price,date_time,extra`)",
        arguments: args!(),
        build: q0,
    });
    r.register(JobDefinition {
        name: "nexmark-q1",
        description: "Nexmark q1, currency conversion: every bid with its price × 0.908 (lines `auction,bidder,price_eur,date_time,extra`)",
        arguments: args!(),
        build: q1,
    });
    r.register(JobDefinition {
        name: "nexmark-q2",
        description: "Nexmark q2, selection: bids on every 123rd auction (lines `auction,price`)",
        arguments: args!(),
        build: q2,
    });
    r.register(JobDefinition {
        name: "nexmark-q3",
        description: "Nexmark q3, local item suggestion: join of sellers in OR, ID, CA with their auctions in category 10 (lines `name,city,state,auction`)",
        arguments: args!(),
        build: q3,
    });
    r.register(JobDefinition {
        name: "nexmark-q4",
        description: "Nexmark q4, average price per category: each closed auction's winning bid, averaged per category (lines `category,auctions,average`, one per closed auction)",
        arguments: args!(),
        build: q4,
    });
    r.register(JobDefinition {
        name: "nexmark-q5",
        description: "Nexmark q5, hot items: the auctions with the most bids per sliding window (lines `window_end,auction,bids`)",
        arguments: args!(
            "--window-ms W    window size in event time (default 10000)",
            "--slide-ms S     window slide (default 2000)"
        ),
        build: q5,
    });
    r.register(JobDefinition {
        name: "nexmark-q7",
        description: "Nexmark q7, highest bid: the bids with the highest price per tumbling window (lines `window_end,auction,price,bidder,date_time`)",
        arguments: args!("--window-ms W    window size in event time (default 10000)"),
        build: q7,
    });
    r.register(JobDefinition {
        name: "nexmark-q8",
        description: "Nexmark q8, monitor new users: persons who opened an auction in the tumbling window they registered in (lines `person,name,window_start`)",
        arguments: args!("--window-ms W    window size in event time (default 10000)"),
        build: q8,
    });
}

/// The common arguments: the event stream, with event-time timestamps (the source emits the
/// watermarks), and the output.
fn source(env: &StreamEnv, args: &mut JobArgs) -> Result<(DataStream<Event>, String)> {
    let events: u64 = args.number("events", 1_000_000, 0, u64::MAX)?;
    let rate: f64 = args.number("rate", 0.0, 0.0, f64::MAX)?;
    let output = args.required_path("output")?;
    let stream = env
        .add_source("Nexmark", move || NexmarkSource::new(events, rate))
        .uid("nexmark-source")
        .with_timestamps(|e: &Event| e.timestamp());
    Ok((stream, output))
}

fn window_arg(args: &mut JobArgs, name: &str, default: u64) -> Result<Duration> {
    Ok(Duration::from_millis(args.number(
        name,
        default,
        1,
        365 * 24 * 3600 * 1000,
    )?))
}

/// `output` as for the other built-in jobs, or `blackhole`: a discarding sink (benchmarks).
fn sink<T: Data>(stream: &DataStream<T>, output: &str, format: fn(&T, &mut String)) -> Result<()> {
    if output == "blackhole" {
        stream.sink_to("Blackhole", BlackholeSink::new).uid("sink");
        return Ok(());
    }
    sink_lines(stream, output, format)
}

fn bids(events: &DataStream<Event>) -> DataStream<Bid> {
    events
        .flat_map(|e: Event| match e {
            Event::Bid(b) => Some(b),
            _ => None,
        })
        .name("Bids")
        .with_timestamps(|b: &Bid| b.date_time)
}

// ---------------------------------------------------------------- q0, q1, q2: stateless

fn q0(env: &StreamEnv, args: &mut JobArgs) -> Result<()> {
    let (events, output) = source(env, args)?;
    sink(&bids(&events), &output, |b: &Bid, s| {
        csv!(s, b.auction, b.bidder, b.price, b.date_time, b.extra);
    })
}

/// `price × 0.908` in thousandths of a euro: exact integer arithmetic, a number like Flink's
/// `0.908 * price` (no string per bid); the sink writes it with three decimals
/// (`lines::push_milli`). Prices stay below 10^8 · 100, far from overflowing.
pub fn dollar_to_milli_euro(price: u64) -> u64 {
    price.saturating_mul(908)
}

fn q1(env: &StreamEnv, args: &mut JobArgs) -> Result<()> {
    let (events, output) = source(env, args)?;
    let converted = bids(&events)
        .map(|b: Bid| {
            (
                b.auction,
                b.bidder,
                dollar_to_milli_euro(b.price),
                b.date_time,
                b.extra,
            )
        })
        .name("ToEuro");
    sink(
        &converted,
        &output,
        |r: &(u64, u64, u64, Timestamp, String), s| {
            csv!(s, r.0, r.1);
            s.push(',');
            push_milli(s, r.2);
            s.push(',');
            csv!(s, r.3, r.4);
        },
    )
}

fn q2(env: &StreamEnv, args: &mut JobArgs) -> Result<()> {
    let (events, output) = source(env, args)?;
    let selected = events
        .flat_map(|e: Event| match e {
            Event::Bid(b) if b.auction % 123 == 0 => Some((b.auction, b.price)),
            _ => None,
        })
        .name("Select");
    sink(&selected, &output, |r: &(u64, u64), s| {
        csv!(s, r.0, r.1);
    })
}

// ---------------------------------------------------------------- q3: join

/// What q3 keeps of a person or an auction.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Q3In {
    Person {
        id: u64,
        name: String,
        city: String,
        state: String,
    },
    Auction {
        id: u64,
        seller: u64,
    },
}

/// Inner join of persons and auctions on `person.id = auction.seller`: a person is kept for
/// good (it is unique), auctions that arrive before their seller wait for it.
#[derive(Clone, Default)]
struct Q3Join {
    person: ValueState<(String, String, String)>,
    waiting: ListState<u64>,
}

type Q3Out = (String, String, String, u64);

impl KeyedProcessFunction<u64, Q3In, Q3Out> for Q3Join {
    fn open(&mut self, ctx: &mut KeyedOpenContext<'_, u64>) -> Result<()> {
        self.person = ctx.value_state("person")?;
        self.waiting = ctx.list_state("waiting-auctions")?;
        Ok(())
    }

    fn process_element(
        &mut self,
        value: Q3In,
        ctx: &mut KeyedContext<'_, u64, Q3Out>,
    ) -> Result<()> {
        match value {
            Q3In::Person {
                name, city, state, ..
            } => {
                for auction in ctx.list_take(self.waiting) {
                    ctx.emit((name.clone(), city.clone(), state.clone(), auction));
                }
                ctx.set_value(self.person, (name, city, state));
            }
            Q3In::Auction { id, .. } => match ctx.value(self.person) {
                Some((name, city, state)) => {
                    let row = (name.clone(), city.clone(), state.clone(), id);
                    ctx.emit(row);
                }
                None => ctx.list_push(self.waiting, id),
            },
        }
        Ok(())
    }
}

fn q3(env: &StreamEnv, args: &mut JobArgs) -> Result<()> {
    let (events, output) = source(env, args)?;
    let joined = events
        .flat_map(|e: Event| match e {
            Event::Person(p) if matches!(p.state.as_str(), "OR" | "ID" | "CA") => {
                Some(Q3In::Person {
                    id: p.id,
                    name: p.name,
                    city: p.city,
                    state: p.state,
                })
            }
            Event::Auction(a) if a.category == 10 => Some(Q3In::Auction {
                id: a.id,
                seller: a.seller,
            }),
            _ => None,
        })
        .name("FilterPersonsAuctions")
        .key_by(|r: &Q3In| match r {
            Q3In::Person { id, .. } => *id,
            Q3In::Auction { seller, .. } => *seller,
        })
        .process(Q3Join::default())
        .name("JoinPersonAuction")
        .uid("q3-join");
    sink(&joined, &output, |r: &Q3Out, s| {
        csv!(s, r.0, r.1, r.2, r.3);
    })
}

// ---------------------------------------------------------------- q4: winning bids per category

#[derive(Clone, Debug, Serialize, Deserialize)]
enum Q4In {
    Auction {
        id: u64,
        category: u64,
        date_time: Timestamp,
        expires: Timestamp,
    },
    Bid {
        auction: u64,
        price: u64,
        date_time: Timestamp,
    },
}

/// The winning bid of each auction: the highest price among its bids with
/// `auction.date_time <= bid.date_time <= auction.expires`, emitted as `(auction, category,
/// price)` when the watermark passes `expires` (auctions without such a bid emit nothing).
/// Bids that arrive before their auction wait until the watermark passes their own time: by
/// then an auction that opened at or before them has arrived.
#[derive(Clone, Default)]
struct WinningBid {
    /// `(category, date_time, expires)`.
    auction: ValueState<(u64, Timestamp, Timestamp)>,
    max_price: ValueState<u64>,
    /// Bids before their auction: `(date_time, price)`.
    early: ListState<(Timestamp, u64)>,
}

impl KeyedProcessFunction<u64, Q4In, (u64, u64, u64)> for WinningBid {
    fn open(&mut self, ctx: &mut KeyedOpenContext<'_, u64>) -> Result<()> {
        self.auction = ctx.value_state("auction")?;
        self.max_price = ctx.value_state("max-price")?;
        self.early = ctx.list_state("early-bids")?;
        Ok(())
    }

    fn process_element(
        &mut self,
        value: Q4In,
        ctx: &mut KeyedContext<'_, u64, (u64, u64, u64)>,
    ) -> Result<()> {
        match value {
            Q4In::Auction {
                category,
                date_time,
                expires,
                ..
            } => {
                let mut max = None;
                for (ts, price) in ctx.list_take(self.early) {
                    if (date_time..=expires).contains(&ts) {
                        max = max.max(Some(price));
                    }
                }
                if let Some(m) = max {
                    ctx.set_value(self.max_price, m);
                }
                ctx.set_value(self.auction, (category, date_time, expires));
                ctx.register_event_time_timer(expires);
            }
            Q4In::Bid {
                price, date_time, ..
            } => match ctx.value(self.auction).copied() {
                Some((_, open, expires)) => {
                    if (open..=expires).contains(&date_time) {
                        let m = ctx.value_or_insert_with(self.max_price, || price);
                        *m = (*m).max(price);
                    }
                }
                None => {
                    ctx.list_push(self.early, (date_time, price));
                    ctx.register_event_time_timer(date_time);
                }
            },
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        timestamp: Timestamp,
        _domain: TimeDomain,
        ctx: &mut KeyedContext<'_, u64, (u64, u64, u64)>,
    ) -> Result<()> {
        match ctx.value(self.auction).copied() {
            Some((category, _, expires)) => {
                if timestamp >= expires {
                    if let Some(price) = ctx.clear_value(self.max_price) {
                        let id = *ctx.key();
                        ctx.emit((id, category, price));
                    }
                    ctx.clear_value(self.auction);
                }
            }
            None => {
                // The auction of these bids opened after them (or closed before): they never win.
                let keep: Vec<(Timestamp, u64)> = ctx
                    .list_take(self.early)
                    .into_iter()
                    .filter(|&(ts, _)| ts > timestamp)
                    .collect();
                for b in keep {
                    ctx.list_push(self.early, b);
                }
            }
        }
        Ok(())
    }
}

/// Running average of the winning prices per category: `(category, auctions, average)`.
#[derive(Clone, Default)]
struct CategoryAverage {
    acc: ValueState<(u64, u64)>,
}

impl KeyedProcessFunction<u64, (u64, u64, u64), (u64, u64, u64)> for CategoryAverage {
    fn open(&mut self, ctx: &mut KeyedOpenContext<'_, u64>) -> Result<()> {
        self.acc = ctx.value_state("count-sum")?;
        Ok(())
    }

    fn process_element(
        &mut self,
        (_, category, price): (u64, u64, u64),
        ctx: &mut KeyedContext<'_, u64, (u64, u64, u64)>,
    ) -> Result<()> {
        let acc = ctx.value_or_insert_with(self.acc, || (0, 0));
        acc.0 += 1;
        acc.1 += price;
        let (n, sum) = *acc;
        ctx.emit((category, n, sum / n));
        Ok(())
    }
}

fn q4(env: &StreamEnv, args: &mut JobArgs) -> Result<()> {
    let (events, output) = source(env, args)?;
    let averages = events
        .flat_map(|e: Event| match e {
            Event::Auction(a) => Some(Q4In::Auction {
                id: a.id,
                category: a.category,
                date_time: a.date_time,
                expires: a.expires,
            }),
            Event::Bid(b) => Some(Q4In::Bid {
                auction: b.auction,
                price: b.price,
                date_time: b.date_time,
            }),
            Event::Person(_) => None,
        })
        .name("AuctionsBids")
        .with_timestamps(|r: &Q4In| match r {
            Q4In::Auction { date_time, .. } | Q4In::Bid { date_time, .. } => *date_time,
        })
        .key_by(|r: &Q4In| match r {
            Q4In::Auction { id, .. } => *id,
            Q4In::Bid { auction, .. } => *auction,
        })
        .process(WinningBid::default())
        .name("WinningBids")
        .uid("q4-winning-bids")
        .key_by(|r: &(u64, u64, u64)| r.1)
        .process(CategoryAverage::default())
        .name("AveragePerCategory")
        .uid("q4-average");
    sink(&averages, &output, |r: &(u64, u64, u64), s| {
        csv!(s, r.0, r.1, r.2);
    })
}

// ---------------------------------------------------------------- q5: hot items

#[derive(Clone)]
struct CountBids;

impl AggregateFunction<Bid> for CountBids {
    type Acc = u64;
    type Out = u64;
    fn create_accumulator(&self) -> u64 {
        0
    }
    fn add(&self, _value: Bid, acc: &mut u64) {
        *acc += 1;
    }
    fn get_result(&self, acc: u64) -> u64 {
        acc
    }
    fn merge(&self, a: u64, b: u64) -> u64 {
        a + b
    }
}

/// Per window end: the auctions with the highest bid count, emitted when the watermark passes
/// the window (all its counts have arrived by then).
#[derive(Clone, Default)]
struct HotItems {
    /// `(highest count, auctions with it)`.
    top: ValueState<(u64, Vec<u64>)>,
}

impl KeyedProcessFunction<Timestamp, (Timestamp, u64, u64), (Timestamp, u64, u64)> for HotItems {
    fn open(&mut self, ctx: &mut KeyedOpenContext<'_, Timestamp>) -> Result<()> {
        self.top = ctx.value_state("top")?;
        Ok(())
    }

    fn process_element(
        &mut self,
        (end, auction, count): (Timestamp, u64, u64),
        ctx: &mut KeyedContext<'_, Timestamp, (Timestamp, u64, u64)>,
    ) -> Result<()> {
        if ctx.value(self.top).is_none() {
            ctx.register_event_time_timer(end - 1);
        }
        let top = ctx.value_or_insert_with(self.top, || (0, Vec::new()));
        if count > top.0 {
            *top = (count, vec![auction]);
        } else if count == top.0 {
            top.1.push(auction);
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        _timestamp: Timestamp,
        _domain: TimeDomain,
        ctx: &mut KeyedContext<'_, Timestamp, (Timestamp, u64, u64)>,
    ) -> Result<()> {
        if let Some((count, auctions)) = ctx.clear_value(self.top) {
            let end = *ctx.key();
            for a in auctions {
                ctx.emit((end, a, count));
            }
        }
        Ok(())
    }
}

fn q5(env: &StreamEnv, args: &mut JobArgs) -> Result<()> {
    let size = window_arg(args, "window-ms", 10_000)?;
    let slide = window_arg(args, "slide-ms", 2_000)?;
    let (events, output) = source(env, args)?;
    let hot = bids(&events)
        .key_by(|b: &Bid| b.auction)
        .window(SlidingEventTimeWindows::of(size, slide))?
        .aggregate_with_window(CountBids, |auction: &u64, w: &TimeWindow, n: u64| {
            (w.end, *auction, n)
        })
        .uid("q5-bid-counts")
        .with_timestamps(|r: &(Timestamp, u64, u64)| r.0 - 1)
        .key_by(|r: &(Timestamp, u64, u64)| r.0)
        .process(HotItems::default())
        .name("HotItems")
        .uid("q5-hot-items");
    sink(&hot, &output, |r: &(Timestamp, u64, u64), s| {
        csv!(s, r.0, r.1, r.2);
    })
}

// ---------------------------------------------------------------- q7: highest bid

/// A bid as q7 reports it: `(auction, price, bidder, date_time)`.
type Q7Bid = (u64, u64, u64, Timestamp);

/// The highest price in a window and every bid with it.
#[derive(Clone)]
struct MaxBids;

impl AggregateFunction<Bid> for MaxBids {
    type Acc = (u64, Vec<Q7Bid>);
    type Out = (u64, Vec<Q7Bid>);
    fn create_accumulator(&self) -> Self::Acc {
        (0, Vec::new())
    }
    fn add(&self, b: Bid, acc: &mut Self::Acc) {
        let row = (b.auction, b.price, b.bidder, b.date_time);
        if b.price > acc.0 || acc.1.is_empty() {
            *acc = (b.price, vec![row]);
        } else if b.price == acc.0 {
            acc.1.push(row);
        }
    }
    fn get_result(&self, acc: Self::Acc) -> Self::Out {
        acc
    }
    fn merge(&self, a: Self::Acc, b: Self::Acc) -> Self::Acc {
        merge_max(a, b)
    }
}

fn merge_max(mut a: (u64, Vec<Q7Bid>), b: (u64, Vec<Q7Bid>)) -> (u64, Vec<Q7Bid>) {
    if a.1.is_empty() || b.0 > a.0 {
        return b;
    }
    if b.0 == a.0 {
        a.1.extend(b.1);
    }
    a
}

/// Per window end: merges the per-key maxima and emits the window's highest bids when the
/// watermark passes it.
#[derive(Clone, Default)]
struct HighestBids {
    top: ValueState<(u64, Vec<Q7Bid>)>,
}

type Q7Partial = (Timestamp, u64, Vec<Q7Bid>);

impl KeyedProcessFunction<Timestamp, Q7Partial, (Timestamp, Q7Bid)> for HighestBids {
    fn open(&mut self, ctx: &mut KeyedOpenContext<'_, Timestamp>) -> Result<()> {
        self.top = ctx.value_state("top")?;
        Ok(())
    }

    fn process_element(
        &mut self,
        (end, price, rows): Q7Partial,
        ctx: &mut KeyedContext<'_, Timestamp, (Timestamp, Q7Bid)>,
    ) -> Result<()> {
        let merged = match ctx.clear_value(self.top) {
            Some(top) => merge_max(top, (price, rows)),
            None => {
                ctx.register_event_time_timer(end - 1);
                (price, rows)
            }
        };
        ctx.set_value(self.top, merged);
        Ok(())
    }

    fn on_timer(
        &mut self,
        _timestamp: Timestamp,
        _domain: TimeDomain,
        ctx: &mut KeyedContext<'_, Timestamp, (Timestamp, Q7Bid)>,
    ) -> Result<()> {
        if let Some((_, rows)) = ctx.clear_value(self.top) {
            let end = *ctx.key();
            for r in rows {
                ctx.emit((end, r));
            }
        }
        Ok(())
    }
}

fn q7(env: &StreamEnv, args: &mut JobArgs) -> Result<()> {
    let size = window_arg(args, "window-ms", 10_000)?;
    let (events, output) = source(env, args)?;
    let highest = bids(&events)
        .key_by(|b: &Bid| b.auction)
        .window(TumblingEventTimeWindows::of(size))?
        .aggregate_with_window(MaxBids, |_: &u64, w: &TimeWindow, (price, rows)| {
            (w.end, price, rows)
        })
        .uid("q7-max-per-auction")
        .with_timestamps(|r: &Q7Partial| r.0 - 1)
        .key_by(|r: &Q7Partial| r.0)
        .process(HighestBids::default())
        .name("HighestBids")
        .uid("q7-highest-bids");
    sink(&highest, &output, |(end, r): &(Timestamp, Q7Bid), s| {
        csv!(s, end, r.0, r.1, r.2, r.3);
    })
}

// ---------------------------------------------------------------- q8: window join

/// A person's registration (with the name) or an auction opened by that person id.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Q8In {
    person: u64,
    name: Option<String>,
    date_time: Timestamp,
}

/// Per (person, window): the name if the person registered in it, and whether they opened an
/// auction in it.
#[derive(Clone)]
struct NewSellers;

impl AggregateFunction<Q8In> for NewSellers {
    type Acc = (Option<String>, bool);
    type Out = (Option<String>, bool);
    fn create_accumulator(&self) -> Self::Acc {
        (None, false)
    }
    fn add(&self, value: Q8In, acc: &mut Self::Acc) {
        match value.name {
            Some(n) => acc.0 = Some(n),
            None => acc.1 = true,
        }
    }
    fn get_result(&self, acc: Self::Acc) -> Self::Out {
        acc
    }
    fn merge(&self, a: Self::Acc, b: Self::Acc) -> Self::Acc {
        (a.0.or(b.0), a.1 || b.1)
    }
}

fn q8(env: &StreamEnv, args: &mut JobArgs) -> Result<()> {
    let size = window_arg(args, "window-ms", 10_000)?;
    let (events, output) = source(env, args)?;
    let joined = events
        .flat_map(|e: Event| match e {
            Event::Person(p) => Some(Q8In {
                person: p.id,
                name: Some(p.name),
                date_time: p.date_time,
            }),
            Event::Auction(a) => Some(Q8In {
                person: a.seller,
                name: None,
                date_time: a.date_time,
            }),
            Event::Bid(_) => None,
        })
        .name("PersonsAuctions")
        .with_timestamps(|r: &Q8In| r.date_time)
        .key_by(|r: &Q8In| r.person)
        .window(TumblingEventTimeWindows::of(size))?
        .aggregate_with_window(
            NewSellers,
            |person: &u64, w: &TimeWindow, (name, auction): (Option<String>, bool)| {
                name.filter(|_| auction).map(|n| (*person, n, w.start))
            },
        )
        .uid("q8-window-join")
        .flat_map(|r: Option<(u64, String, Timestamp)>| r)
        .name("Joined");
    sink(&joined, &output, |r: &(u64, String, Timestamp), s| {
        csv!(s, r.0, r.1, r.2);
    })
}
