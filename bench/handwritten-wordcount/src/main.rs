//! The baseline of the word-count benchmark: a competent single-threaded word count.
//!
//!     handwritten-wordcount FILE [--hasher std|fx] [--dump PATH]
//!
//! Same semantics as Eddy's `word-count` job: words are the runs of alphanumeric characters
//! (`char::is_alphanumeric`, Unicode), lowercased (`str::to_lowercase`; ASCII words take a byte
//! fast path with the same result). Counts go into a `HashMap<String, u64>` with the standard
//! SipHash-1-3 hasher (`--hasher std`, the default) or FxHash (`--hasher fx`: rustc's classic
//! FxHasher, inlined here so the program has no dependencies). A word already in the map costs no
//! allocation (looked up by `&str` through a reused buffer).
//!
//! Prints one JSON line: bytes, total words, distinct words, and the time from opening the file
//! to the last count (`elapsed_ms`, reading included). It must never write anything but stdout and
//! the `--dump` file.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::io::Write;
use std::time::Instant;

/// rustc's FxHasher (the pre-2.0 `rustc-hash` algorithm): rotate, xor, multiply, 8 bytes a step.
#[derive(Default, Clone, Copy)]
struct FxHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, mut bytes: &[u8]) {
        while bytes.len() >= 8 {
            self.add(u64::from_le_bytes(bytes[..8].try_into().unwrap()));
            bytes = &bytes[8..];
        }
        if bytes.len() >= 4 {
            self.add(u32::from_le_bytes(bytes[..4].try_into().unwrap()) as u64);
            bytes = &bytes[4..];
        }
        for &b in bytes {
            self.add(b as u64);
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

/// Counts the words of `text` into `counts`; returns the number of words.
fn count<S: BuildHasher>(text: &str, counts: &mut HashMap<String, u64, S>) -> u64 {
    let mut total = 0u64;
    let mut lower = String::with_capacity(64);
    for w in text.split(|c: char| !c.is_alphanumeric()) {
        if w.is_empty() {
            continue;
        }
        total += 1;
        lower.clear();
        if w.is_ascii() {
            lower.extend(w.bytes().map(|b| b.to_ascii_lowercase() as char));
        } else {
            lower.push_str(&w.to_lowercase());
        }
        match counts.get_mut(lower.as_str()) {
            Some(c) => *c += 1,
            None => {
                counts.insert(lower.clone(), 1);
            }
        }
    }
    total
}

fn run<S: BuildHasher + Default>(path: &str, hasher: &str, dump: Option<&str>) -> Result<(), String> {
    let start = Instant::now();
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let mut counts: HashMap<String, u64, S> = HashMap::default();
    let total = count(&text, &mut counts);
    let elapsed = start.elapsed();
    println!(
        "{{\"bytes\":{},\"words\":{},\"distinct\":{},\"elapsed_ms\":{:.3},\"hasher\":\"{}\"}}",
        text.len(),
        total,
        counts.len(),
        elapsed.as_secs_f64() * 1000.0,
        hasher
    );
    if let Some(d) = dump {
        let mut v: Vec<(&String, &u64)> = counts.iter().collect();
        v.sort();
        let f = std::fs::File::create(d).map_err(|e| format!("cannot create {d}: {e}"))?;
        let mut w = std::io::BufWriter::new(f);
        for (k, c) in v {
            writeln!(w, "{k},{c}").map_err(|e| format!("cannot write {d}: {e}"))?;
        }
        w.flush().map_err(|e| format!("cannot write {d}: {e}"))?;
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut path = None;
    let mut hasher = "std".to_string();
    let mut dump = None;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--hasher" if i + 1 < args.len() => {
                hasher = args[i + 1].clone();
                i += 1;
            }
            "--dump" if i + 1 < args.len() => {
                dump = Some(args[i + 1].clone());
                i += 1;
            }
            a if !a.starts_with("--") && path.is_none() => path = Some(a.to_string()),
            a => {
                eprintln!("unexpected argument '{a}'; usage: handwritten-wordcount FILE [--hasher std|fx] [--dump PATH]");
                std::process::exit(2);
            }
        }
        i += 1;
    }
    let Some(path) = path else {
        eprintln!("usage: handwritten-wordcount FILE [--hasher std|fx] [--dump PATH]");
        std::process::exit(2);
    };
    let r = match hasher.as_str() {
        "std" => run::<std::collections::hash_map::RandomState>(&path, "std", dump.as_deref()),
        "fx" => run::<BuildHasherDefault<FxHasher>>(&path, "fx", dump.as_deref()),
        h => Err(format!("invalid --hasher '{h}': expected std or fx")),
    };
    if let Err(e) = r {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
