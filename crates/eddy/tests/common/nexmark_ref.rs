//! Single-threaded reference implementations of the Nexmark queries, straight from their
//! definitions (docs/nexmark.md) over the events `0..n` in order: the `nexmark-qN` jobs' output
//! lines must equal these (as multisets; q4 by its final average per category).
#![allow(dead_code)]

use eddy::connectors::generators::nexmark::{event, Event};
use std::collections::{BTreeMap, BTreeSet, HashMap};

pub fn events(n: u64) -> Vec<Event> {
    (0..n).map(event).collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort_unstable();
    v
}

/// q0: every bid.
pub fn q0(ev: &[Event]) -> Vec<String> {
    sorted(
        ev.iter()
            .filter_map(|e| match e {
                Event::Bid(b) => Some(format!(
                    "{},{},{},{},{}",
                    b.auction, b.bidder, b.price, b.date_time, b.extra
                )),
                _ => None,
            })
            .collect(),
    )
}

/// q1: every bid, price × 0.908 with three decimals.
pub fn q1(ev: &[Event]) -> Vec<String> {
    sorted(
        ev.iter()
            .filter_map(|e| match e {
                Event::Bid(b) => Some(format!(
                    "{},{},{:.3},{},{}",
                    b.auction,
                    b.bidder,
                    b.price as f64 * 0.908,
                    b.date_time,
                    b.extra
                )),
                _ => None,
            })
            .collect(),
    )
}

/// q2: bids on auctions whose id is a multiple of 123.
pub fn q2(ev: &[Event]) -> Vec<String> {
    sorted(
        ev.iter()
            .filter_map(|e| match e {
                Event::Bid(b) if b.auction % 123 == 0 => Some(format!("{},{}", b.auction, b.price)),
                _ => None,
            })
            .collect(),
    )
}

/// q3: persons in OR, ID, CA joined with their auctions in category 10.
pub fn q3(ev: &[Event]) -> Vec<String> {
    let persons: HashMap<u64, _> = ev
        .iter()
        .filter_map(|e| match e {
            Event::Person(p) if ["OR", "ID", "CA"].contains(&p.state.as_str()) => Some((p.id, p)),
            _ => None,
        })
        .collect();
    sorted(
        ev.iter()
            .filter_map(|e| match e {
                Event::Auction(a) if a.category == 10 => persons
                    .get(&a.seller)
                    .map(|p| format!("{},{},{},{}", p.name, p.city, p.state, a.id)),
                _ => None,
            })
            .collect(),
    )
}

/// q4: per category, (auctions with a winning bid, average winning price): the winning price
/// of an auction is its highest bid with `date_time` in `[auction.date_time, expires]`.
pub fn q4(ev: &[Event]) -> BTreeMap<u64, (u64, u64)> {
    let auctions: HashMap<u64, _> = ev
        .iter()
        .filter_map(|e| match e {
            Event::Auction(a) => Some((a.id, a)),
            _ => None,
        })
        .collect();
    let mut winning: HashMap<u64, u64> = HashMap::new();
    for e in ev {
        if let Event::Bid(b) = e {
            if let Some(a) = auctions.get(&b.auction) {
                if a.date_time <= b.date_time && b.date_time <= a.expires {
                    let w = winning.entry(a.id).or_insert(b.price);
                    *w = (*w).max(b.price);
                }
            }
        }
    }
    let mut per_category: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for (id, price) in winning {
        let c = per_category.entry(auctions[&id].category).or_default();
        c.0 += 1;
        c.1 += price;
    }
    per_category
        .into_iter()
        .map(|(cat, (n, sum))| (cat, (n, sum / n)))
        .collect()
}

/// q4's job output reduced to what the reference gives: per category the line with the most
/// auctions; also checks each category's counts are exactly 1..=n (one line per closed auction).
pub fn q4_final(lines: &[String]) -> BTreeMap<u64, (u64, u64)> {
    let mut counts: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    let mut last: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for l in lines {
        let f: Vec<u64> = l.split(',').map(|x| x.parse().expect(l)).collect();
        counts.entry(f[0]).or_default().push(f[1]);
        let e = last.entry(f[0]).or_insert((f[1], f[2]));
        if f[1] > e.0 {
            *e = (f[1], f[2]);
        }
    }
    for (cat, mut c) in counts {
        c.sort_unstable();
        assert_eq!(
            c,
            (1..=c.len() as u64).collect::<Vec<_>>(),
            "category {cat}"
        );
    }
    last
}

/// q5: per sliding window (by end), the auctions with the most bids.
pub fn q5(ev: &[Event], size: i64, slide: i64) -> Vec<String> {
    let mut counts: BTreeMap<i64, HashMap<u64, u64>> = BTreeMap::new();
    for e in ev {
        if let Event::Bid(b) = e {
            let ts = b.date_time;
            let mut start = ts - ts.rem_euclid(slide);
            while start > ts - size {
                *counts
                    .entry(start + size)
                    .or_default()
                    .entry(b.auction)
                    .or_default() += 1;
                start -= slide;
            }
        }
    }
    let mut out = Vec::new();
    for (end, per_auction) in counts {
        let max = per_auction.values().copied().max().unwrap();
        for (auction, n) in per_auction {
            if n == max {
                out.push(format!("{end},{auction},{n}"));
            }
        }
    }
    sorted(out)
}

/// q7: per tumbling window, the bids with the highest price.
pub fn q7(ev: &[Event], size: i64) -> Vec<String> {
    let mut windows: BTreeMap<i64, Vec<_>> = BTreeMap::new();
    for e in ev {
        if let Event::Bid(b) = e {
            let end = b.date_time - b.date_time.rem_euclid(size) + size;
            windows.entry(end).or_default().push(b);
        }
    }
    let mut out = Vec::new();
    for (end, bids) in windows {
        let max = bids.iter().map(|b| b.price).max().unwrap();
        for b in bids.iter().filter(|b| b.price == max) {
            out.push(format!(
                "{end},{},{},{},{}",
                b.auction, b.price, b.bidder, b.date_time
            ));
        }
    }
    sorted(out)
}

/// q8: persons who opened an auction in the tumbling window they registered in.
pub fn q8(ev: &[Event], size: i64) -> Vec<String> {
    let start = |ts: i64| ts - ts.rem_euclid(size);
    let sellers: BTreeSet<(i64, u64)> = ev
        .iter()
        .filter_map(|e| match e {
            Event::Auction(a) => Some((start(a.date_time), a.seller)),
            _ => None,
        })
        .collect();
    sorted(
        ev.iter()
            .filter_map(|e| match e {
                Event::Person(p) if sellers.contains(&(start(p.date_time), p.id)) => {
                    Some(format!("{},{},{}", p.id, p.name, start(p.date_time)))
                }
                _ => None,
            })
            .collect(),
    )
}
