//! The built-in jobs: the demos and witnesses of SPEC §7, and the benchmark jobs.
//!
//! Each is a plain function over the DataStream API, registered by name; a user's own jobs are
//! written and registered exactly the same way (see `examples/custom_job.rs`). Builders run in
//! every process that rebuilds the job, so their checks must be repeatable and side-effect free
//! beyond creating the output directory.

use eddy_connectors::{
    BlackholeSink, CarEvent, CarSource, FileSink, FileSource, PrintSink, RowSource, SequenceSource,
};
use eddy_runtime::data::now_millis;
use eddy_runtime::operator::{Output, TaskInfo};
use eddy_runtime::registry::{JobArgs, JobDefinition, JobRegistry};
use eddy_runtime::snapshot::{OperatorSnapshot, SnapshotWriter};
use eddy_runtime::state::ValueState;
use eddy_runtime::window::{TumblingEventTimeWindows, WatermarkStrategy};
use eddy_runtime::{
    Data, DataStream, JobError, KeyedContext, KeyedOpenContext, KeyedProcessFunction, Operator,
    Result, StreamEnv, Timestamp,
};
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::time::Duration;

pub fn register_builtin(r: &mut JobRegistry) {
    r.register(JobDefinition {
        name: "word-count",
        description: "bounded file source -> lowercase words -> keyed running count -> exactly-once file sink (lines `word,count`)",
        arguments: &[
            "--input PATH       the text file to count",
            "--output DIR       where committed part files go ('-' = stdout)",
            "--rate R           lines/s read for the whole job (default 0 = unthrottled)",
            "--count-uid UID    the counting operator's uid (default count): another one does not match its state in a savepoint",
        ],
        build: word_count,
    });
    r.register(JobDefinition {
        name: "sequence",
        description: "the exactly-once witness: seq 1..N for every key -> keyed count -> file sink (lines `key,seq,count`; correct iff every (key,seq) once and count == seq)",
        arguments: &[
            "--keys K                 number of keys",
            "--per-key N              records per key",
            "--rate R                 records/s for the whole job (default 0 = unthrottled)",
            "--output DIR             where committed part files go ('-' = stdout)",
            "--fail-every N           the counting operator fails every N records it processes, per subtask (default 0 = never)",
            "--fail-probability P     ... or fails each record with probability P (0..1)",
            "--seed S                 seed for --fail-probability (default 1)",
            "--fail-subtask I         inject failures only in subtask I (default: all)",
            "--fail-on-file PATH      fail once when PATH exists (the file is removed): a failure at a moment a test chooses",
            "--forward                count without a keyed exchange (forward-only pipeline: one pipelined region per subtask)",
            "--snapshot-delay-ms D    every checkpoint snapshot of the source chain takes D ms longer (widens the trigger-to-complete window for tests)",
            "--slow-snapshots N       ... only the first N snapshots of each subtask attempt (default: all)",
            "--cancel-delay-ms D      every source subtask takes D ms longer to stop (a task slow to cancel, for tests)",
            "--counter-uid UID        the counting operator's uid (default counter): another one does not match its state in a savepoint",
            "--count-delay-us D       the counting operator takes D microseconds per record (a slow operator: back-pressure upstream, for tests)",
        ],
        build: sequence,
    });
    r.register(JobDefinition {
        name: "top-speed-windowing",
        description: "car speed events in event time -> per car, the top speed in tumbling windows (lines `car,window_end,top_speed,distance`)",
        arguments: &[
            "--cars N          cars (default 2)",
            "--rate R          events/s for the whole job (default 2000; 0 = unthrottled)",
            "--events N        events in total (default 20000; 0 = unbounded)",
            "--window-ms W     window size in event time (default 10000)",
            "--output DIR      where committed part files go ('-' = stdout)",
        ],
        build: top_speed_windowing,
    });
    r.register(JobDefinition {
        name: "rows-discard",
        description: "benchmark: generated (key, value) rows -> discarding sink",
        arguments: &[
            "--records N      rows in total (default 100000000; 0 = unbounded)",
            "--keys K         distinct keys (default 10000)",
        ],
        build: rows_discard,
    });
    r.register(JobDefinition {
        name: "rows-groupby",
        description: "benchmark: generated rows -> GROUP BY key: running COUNT(*), SUM(value) -> discarding sink",
        arguments: &["--records N      rows in total (default 20000000; 0 = unbounded)", "--keys K         distinct keys (default 10000)"],
        build: rows_groupby,
    });
    crate::nexmark::register(r);
}

/// Writes `T` lines to `output`: a directory (exactly-once file sink) or `-` (stdout).
pub(crate) fn sink_lines<T: Data>(
    stream: &DataStream<T>,
    output: &str,
    format: fn(&T, &mut String),
) -> Result<()> {
    if output == "-" {
        stream
            .sink_to("Print", move || PrintSink::with_format(format))
            .uid("sink");
        return Ok(());
    }
    FileSink::<()>::check(output).map_err(JobError::new)?;
    let dir = output.to_string();
    stream
        .sink_to("FileSink", move || {
            FileSink::with_format(dir.clone(), format)
        })
        .uid("sink");
    Ok(())
}

fn required_number(args: &mut JobArgs, name: &str, min: u64) -> Result<u64> {
    if args.optional(name).is_none() {
        return args.required(name).map(|_| 0);
    }
    args.number(name, 0, min, u64::MAX)
}

fn word_count(env: &StreamEnv, args: &mut JobArgs) -> Result<()> {
    let input = args.required_path("input")?;
    let output = args.required_path("output")?;
    let rate: f64 = args.number("rate", 0.0, 0.0, f64::MAX)?;
    let count_uid = args
        .optional("count-uid")
        .unwrap_or_else(|| "count".to_string());
    FileSource::check(&input).map_err(JobError::new)?;
    let path = input.clone();
    let counts = env
        .add_source("FileSource", move || {
            FileSource::new(path.clone()).with_rate(rate)
        })
        .uid("file-source")
        .transform("Tokenize", TokenizeCombine::default)
        .key_by_ref(|w: &(String, u64)| &w.0)
        .process(WordCounter::default())
        .name("Count")
        .uid(&count_uid);
    sink_lines(&counts, &output, word_count_lines)
}

/// One record `(word, first, last)` stands for the lines `word,first` … `word,last`.
fn word_count_lines(r: &(String, u64, u64), s: &mut String) {
    let mut digits = itoa::Buffer::new();
    for c in r.1..=r.2 {
        if c > r.1 {
            s.push('\n');
        }
        s.push_str(&r.0);
        s.push(',');
        s.push_str(digits.format(c));
    }
}

/// Counts the lowercase words of a line into `counts`, split on non-alphanumeric characters.
/// ASCII lines (the common case) are lowercased in place at once and a word already counted
/// costs no allocation; other lines are lowercased word by word, so the split is always taken
/// before lowercasing (lowercasing can add non-alphanumeric combining marks).
fn count_words<S: BuildHasher>(mut line: String, counts: &mut HashMap<String, u64, S>) {
    let split = |c: char| !c.is_alphanumeric();
    if line.is_ascii() {
        // ASCII: a byte is a character, and `is_alphanumeric` is `is_ascii_alphanumeric`; the
        // words are found on the bytes, without decoding characters.
        line.make_ascii_lowercase();
        let bytes = line.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            while i < bytes.len() && !bytes[i].is_ascii_alphanumeric() {
                i += 1;
            }
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_alphanumeric() {
                i += 1;
            }
            if i > start {
                let w = &line[start..i];
                match counts.get_mut(w) {
                    Some(c) => *c += 1,
                    None => {
                        counts.insert(w.to_owned(), 1);
                    }
                }
            }
        }
    } else {
        for w in line.split(split).filter(|w| !w.is_empty()) {
            *counts.entry(w.to_lowercase()).or_default() += 1;
        }
    }
}

/// The tokenizer and a combiner: the words of up to [`COMBINE_LINES`] lines (several input
/// batches) become one `(word, occurrences)` per distinct word. The counts go out when that many
/// lines were counted, when the map holds [`COMBINE_WORDS`] words, [`COMBINE_DELAY_MS`] after
/// the first held line (a slow source), before a watermark, at the end of input, and before
/// every checkpoint barrier (`prepare_snapshot_pre_barrier`): nothing is held at a snapshot, so
/// the combiner has no state to checkpoint, and the counter downstream sees the same
/// occurrences per word, only in fewer records.
#[derive(Default)]
struct TokenizeCombine {
    counts: HashMap<String, u64, BuildHasherDefault<FxHasher>>,
    /// Lines counted into `counts` since they were last emitted.
    lines: usize,
    /// Processing time by which the held counts go out.
    deadline: Option<Timestamp>,
}

/// Lines whose words the combiner counts before it emits (16 input batches of 1024 lines).
const COMBINE_LINES: usize = 16 * 1024;
/// Distinct words held at most: the map's size bound for texts with a large vocabulary.
const COMBINE_WORDS: usize = 64 * 1024;
/// The longest a count is held back (a source slower than `COMBINE_LINES` per this time).
const COMBINE_DELAY_MS: Timestamp = 50;

impl TokenizeCombine {
    fn emit(&mut self, out: &mut Output<(String, u64)>) {
        out.records.extend(self.counts.drain());
        self.lines = 0;
        self.deadline = None;
    }
}

/// rustc's classic FxHasher (rotate, xor, multiply; 8 bytes a step): the combiner's map is
/// rebuilt every batch and never leaves the task, so it needs speed, not SipHash's resistance to
/// chosen keys (the hand-written baseline offers the same hasher as `--hasher fx`).
#[derive(Default, Clone, Copy)]
struct FxHasher {
    hash: u64,
}

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, mut bytes: &[u8]) {
        while let Some((head, rest)) = bytes.split_first_chunk::<8>() {
            self.add(u64::from_le_bytes(*head));
            bytes = rest;
        }
        if let Some((head, rest)) = bytes.split_first_chunk::<4>() {
            self.add(u32::from_le_bytes(*head) as u64);
            bytes = rest;
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

impl Operator for TokenizeCombine {
    type In = String;
    type Out = (String, u64);

    fn process_batch(
        &mut self,
        input: &mut Vec<String>,
        out: &mut Output<(String, u64)>,
    ) -> Result<()> {
        if input.is_empty() {
            return Ok(());
        }
        if self.deadline.is_none() {
            self.deadline = Some(now_millis() + COMBINE_DELAY_MS);
        }
        self.lines += input.len();
        for line in input.drain(..) {
            count_words(line, &mut self.counts);
        }
        if self.lines >= COMBINE_LINES || self.counts.len() >= COMBINE_WORDS {
            self.emit(out);
        }
        Ok(())
    }

    fn on_processing_time(
        &mut self,
        now: Timestamp,
        out: &mut Output<(String, u64)>,
    ) -> Result<()> {
        if self.deadline.is_some_and(|d| d <= now) {
            self.emit(out);
        }
        Ok(())
    }

    fn next_processing_time_deadline(&self) -> Option<Timestamp> {
        self.deadline
    }

    fn on_watermark(&mut self, wm: Timestamp, out: &mut Output<(String, u64)>) -> Result<()> {
        self.emit(out);
        out.emit_watermark(wm);
        Ok(())
    }

    fn prepare_snapshot_pre_barrier(
        &mut self,
        _checkpoint_id: u64,
        out: &mut Output<(String, u64)>,
    ) -> Result<()> {
        self.emit(out);
        Ok(())
    }

    fn finish(&mut self, out: &mut Output<(String, u64)>) -> Result<()> {
        self.emit(out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn word_count_lines_are_the_counts_in_order() {
        let mut s = String::from("x\n");
        super::word_count_lines(&("über".to_string(), 98, 101), &mut s);
        assert_eq!(s, "x\nüber,98\nüber,99\nüber,100\nüber,101");
        s.clear();
        super::word_count_lines(&("a".to_string(), u64::MAX, u64::MAX), &mut s);
        assert_eq!(s, format!("a,{}", u64::MAX));
    }

    #[test]
    fn count_words_splits_before_lowercasing() {
        let mut counts = std::collections::HashMap::new();
        super::count_words("Hello, World-x1 hello".into(), &mut counts);
        super::count_words("Über naïve ÜBER".into(), &mut counts);
        super::count_words(" ,; ".into(), &mut counts);
        super::count_words("--X1y,,z9 ".into(), &mut counts);
        super::count_words("a".into(), &mut counts);
        let mut got: Vec<(String, u64)> = counts.into_iter().collect();
        got.sort();
        let want = [
            ("a", 1),
            ("hello", 2),
            ("naïve", 1),
            ("world", 1),
            ("x1", 1),
            ("x1y", 1),
            ("z9", 1),
            ("über", 2),
        ];
        assert_eq!(got, want.map(|(w, c)| (w.to_string(), c)));
    }
}

/// Running count per word: the counts of a batch of occurrences at once.
#[derive(Clone, Default)]
struct WordCounter {
    count: ValueState<u64>,
}

impl KeyedProcessFunction<String, (String, u64), (String, u64, u64)> for WordCounter {
    fn open(&mut self, ctx: &mut KeyedOpenContext<'_, String>) -> Result<()> {
        self.count = ctx.value_state("count")?;
        Ok(())
    }

    /// `(word, n)` → `(word, first, last)`: the word's counts `first..=last` after these `n`.
    fn process_element(
        &mut self,
        (word, n): (String, u64),
        ctx: &mut KeyedContext<'_, String, (String, u64, u64)>,
    ) -> Result<()> {
        let c = ctx.value_or_insert_with(self.count, || 0);
        let first = *c + 1;
        *c += n;
        let last = *c;
        ctx.emit((word, first, last));
        Ok(())
    }
}

/// Failure injection for the witness: every N records, or with a probability, per subtask.
#[derive(Clone)]
struct FailureInjector {
    every: u64,
    probability: f64,
    seed: u64,
    only_subtask: Option<u32>,
    /// Fail once when this file appears (it is removed).
    trigger_file: Option<std::path::PathBuf>,
    processed: u64,
    rng: u64,
    active: bool,
    /// `--count-delay-us`: the counter takes this long per record (a slow operator, so the
    /// source upstream is back-pressured); slept in steps of at least 1 ms.
    delay_us: u64,
    owed_us: u64,
}

impl FailureInjector {
    fn open(&mut self, info: &TaskInfo) {
        self.active = self.only_subtask.is_none_or(|s| s == info.subtask_index)
            && (self.every > 0 || self.probability > 0.0 || self.trigger_file.is_some());
        // A different stream per subtask and attempt, so a restart does not replay the failure.
        self.rng = self.seed
            ^ ((info.subtask_index as u64) << 32)
            ^ info.attempt.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            | 1;
        self.processed = 0;
    }

    #[inline]
    fn check(&mut self) -> Result<()> {
        if self.delay_us > 0 {
            self.owed_us += self.delay_us;
            if self.owed_us >= 1_000 {
                std::thread::sleep(Duration::from_micros(self.owed_us));
                self.owed_us = 0;
            }
        }
        if !self.active {
            return Ok(());
        }
        self.processed += 1;
        if let Some(f) = &self.trigger_file {
            if self.processed.is_multiple_of(64) && std::fs::remove_file(f).is_ok() {
                return Err(JobError::new(format!(
                    "injected failure: {} appeared (--fail-on-file)",
                    f.display()
                )));
            }
        }
        if self.every > 0 && self.processed.is_multiple_of(self.every) {
            return Err(JobError::new(format!(
                "injected failure after {} records (--fail-every {})",
                self.processed, self.every
            )));
        }
        if self.probability > 0.0 {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            let draw = (self.rng >> 11) as f64 / (1u64 << 53) as f64;
            if draw < self.probability {
                return Err(JobError::new(format!(
                    "injected failure (--fail-probability {}) after {} records",
                    self.probability, self.processed
                )));
            }
        }
        Ok(())
    }
}

/// The `sequence` job's test hooks after the source, passing records through: each snapshot
/// sleeps `snapshot_delay` first (checkpoints in flight), and the task takes `stop_delay` longer
/// to stop (it sleeps when dropped, before it reports CANCELED or FINISHED).
struct SourceTestHooks {
    snapshot_delay: Duration,
    /// Snapshots still to slow down (per subtask attempt).
    slow_snapshots: u64,
    stop_delay: Duration,
}

impl Operator for SourceTestHooks {
    type In = (u64, u64);
    type Out = (u64, u64);

    fn process_batch(
        &mut self,
        input: &mut Vec<(u64, u64)>,
        out: &mut Output<(u64, u64)>,
    ) -> Result<()> {
        out.records.append(input);
        Ok(())
    }

    fn snapshot_state(&mut self, _checkpoint_id: u64, _writer: &mut SnapshotWriter) -> Result<()> {
        if self.slow_snapshots > 0 && !self.snapshot_delay.is_zero() {
            self.slow_snapshots -= 1;
            std::thread::sleep(self.snapshot_delay);
        }
        Ok(())
    }
}

impl Drop for SourceTestHooks {
    fn drop(&mut self) {
        std::thread::sleep(self.stop_delay);
    }
}

/// Counts records per key: `(key, seq)` → `(key, seq, count)`.
#[derive(Clone)]
struct SequenceCounter {
    count: ValueState<u64>,
    failures: FailureInjector,
}

impl KeyedProcessFunction<u64, (u64, u64), (u64, u64, u64)> for SequenceCounter {
    fn open(&mut self, ctx: &mut KeyedOpenContext<'_, u64>) -> Result<()> {
        self.count = ctx.value_state("count")?;
        self.failures.open(ctx.info);
        Ok(())
    }

    #[inline]
    fn process_element(
        &mut self,
        (key, seq): (u64, u64),
        ctx: &mut KeyedContext<'_, u64, (u64, u64, u64)>,
    ) -> Result<()> {
        self.failures.check()?;
        let c = ctx.value_or_insert_with(self.count, || 0);
        *c += 1;
        let c = *c;
        ctx.emit((key, seq, c));
        Ok(())
    }
}

/// The forward-only variant: counts in operator state (each subtask owns its keys).
struct ForwardCounter {
    counts: HashMap<u64, u64>,
    failures: FailureInjector,
}

const COUNTS: &str = "counts";

impl Operator for ForwardCounter {
    type In = (u64, u64);
    type Out = (u64, u64, u64);

    fn open(&mut self, info: &TaskInfo, restored: Option<&OperatorSnapshot>) -> Result<()> {
        self.failures.open(info);
        if let Some(s) = restored {
            for bytes in s.operator_entries(COUNTS) {
                let part: Vec<(u64, u64)> = bincode::deserialize(bytes)
                    .map_err(|e| JobError::new(format!("corrupt counter state: {e}")))?;
                self.counts.extend(part);
            }
        }
        Ok(())
    }

    fn process_batch(
        &mut self,
        input: &mut Vec<(u64, u64)>,
        out: &mut Output<(u64, u64, u64)>,
    ) -> Result<()> {
        for (key, seq) in input.drain(..) {
            self.failures.check()?;
            let c = self.counts.entry(key).or_default();
            *c += 1;
            out.push((key, seq, *c));
        }
        Ok(())
    }

    fn snapshot_state(&mut self, _checkpoint_id: u64, writer: &mut SnapshotWriter) -> Result<()> {
        let entries: Vec<(u64, u64)> = self.counts.iter().map(|(k, v)| (*k, *v)).collect();
        writer.put_operator_state(COUNTS, bincode::serialize(&entries)?);
        Ok(())
    }
}

/// The `sequence` arguments that inject failures or delays: refused unless test hooks are on.
const SEQUENCE_TEST_HOOKS: &[&str] = &[
    "fail-every",
    "fail-probability",
    "seed",
    "fail-subtask",
    "fail-on-file",
    "snapshot-delay-ms",
    "slow-snapshots",
    "cancel-delay-ms",
    "count-delay-us",
];

fn sequence(env: &StreamEnv, args: &mut JobArgs) -> Result<()> {
    // First, so a refused job has no effect (no output directory, no trigger file touched).
    args.test_hooks(SEQUENCE_TEST_HOOKS)?;
    let keys = required_number(args, "keys", 1)?;
    let per_key = required_number(args, "per-key", 1)?;
    let rate: f64 = args.number("rate", 0.0, 0.0, f64::MAX)?;
    let output = args.required_path("output")?;
    let failures = FailureInjector {
        every: args.number("fail-every", 0, 0, u64::MAX)?,
        probability: args.number("fail-probability", 0.0, 0.0, 1.0)?,
        seed: args.number("seed", 1, 0, u64::MAX)?,
        only_subtask: match args.optional("fail-subtask") {
            None => None,
            Some(v) => Some(v.parse::<u32>().map_err(|_| JobError::new(format!("job 'sequence': invalid value '{v}' for --fail-subtask: expected a subtask index >= 0")))?),
        },
        trigger_file: args.optional("fail-on-file").map(std::path::PathBuf::from),
        processed: 0,
        rng: 0,
        active: false,
        delay_us: args.number("count-delay-us", 0, 0, 1_000_000)?,
        owed_us: 0,
    };
    let forward = args.flag("forward")?;
    let snapshot_delay: u64 = args.number("snapshot-delay-ms", 0, 0, 60_000)?;
    let slow_snapshots: u64 = args.number("slow-snapshots", u64::MAX, 0, u64::MAX)?;
    let cancel_delay: u64 = args.number("cancel-delay-ms", 0, 0, 60_000)?;
    let counter_uid = args
        .optional("counter-uid")
        .unwrap_or_else(|| "counter".to_string());
    let mut source = env
        .add_source("Sequence", move || SequenceSource::new(keys, per_key, rate))
        .uid("sequence-source");
    if snapshot_delay > 0 || cancel_delay > 0 {
        source = source.transform("TestHooks", move || SourceTestHooks {
            snapshot_delay: Duration::from_millis(snapshot_delay),
            slow_snapshots,
            stop_delay: Duration::from_millis(cancel_delay),
        });
    }
    let counted = if forward {
        let f = failures.clone();
        source
            .transform("Count", move || ForwardCounter {
                counts: HashMap::new(),
                failures: f.clone(),
            })
            .uid(&counter_uid)
    } else {
        source
            .key_by(|r: &(u64, u64)| r.0)
            .process(SequenceCounter {
                count: ValueState::default(),
                failures,
            })
            .name("Count")
            .uid(&counter_uid)
    };
    sink_lines(&counted, &output, |r: &(u64, u64, u64), s| {
        crate::lines::csv!(s, r.0, r.1, r.2)
    })
}

fn top_speed_windowing(env: &StreamEnv, args: &mut JobArgs) -> Result<()> {
    let cars: u64 = args.number("cars", 2, 1, 1_000_000)?;
    let rate: f64 = args.number("rate", 2000.0, 0.0, f64::MAX)?;
    let events: u64 = args.number("events", 20_000, 0, u64::MAX)?;
    let window_ms: u64 = args.number("window-ms", 10_000, 1, u64::MAX)?;
    let output = args.required_path("output")?;
    let top = env
        .add_source("Cars", move || CarSource::new(cars as u32, rate, events))
        .uid("cars")
        .assign_timestamps_and_watermarks(
            WatermarkStrategy::for_bounded_out_of_orderness(Duration::from_millis(0))
                .with_timestamp_assigner(|e: &CarEvent| e.timestamp),
        )
        .key_by(|e: &CarEvent| e.car_id)
        .window(TumblingEventTimeWindows::of(Duration::from_millis(
            window_ms,
        )))?
        .reduce_with_window(
            |a: CarEvent, b: CarEvent| CarEvent {
                car_id: a.car_id,
                speed: a.speed.max(b.speed),
                distance: a.distance.max(b.distance),
                timestamp: a.timestamp.max(b.timestamp),
            },
            |car: &u32, w: &eddy_runtime::window::TimeWindow, e: CarEvent| {
                (*car, w.end, e.speed, e.distance)
            },
        )
        .uid("top-speed");
    sink_lines(&top, &output, |r: &(u32, i64, u32, f64), s| {
        use std::fmt::Write;
        let _ = write!(s, "{},{},{},{:.2}", r.0, r.1, r.2, r.3);
    })
}

fn rows_discard(env: &StreamEnv, args: &mut JobArgs) -> Result<()> {
    let records: u64 = args.number("records", 100_000_000, 0, u64::MAX)?;
    let keys: u64 = args.number("keys", 10_000, 1, u64::MAX)?;
    env.add_source("Rows", move || RowSource::new(records, keys))
        .uid("rows")
        .sink_to("Discard", BlackholeSink::new)
        .uid("discard");
    Ok(())
}

/// `GROUP BY key` with running `COUNT(*)` and `SUM(value)`, emitting the updated row per input.
#[derive(Clone, Default)]
struct CountSum {
    acc: ValueState<(u64, i64)>,
}

impl KeyedProcessFunction<u64, (u64, i64), (u64, u64, i64)> for CountSum {
    fn open(&mut self, ctx: &mut KeyedOpenContext<'_, u64>) -> Result<()> {
        self.acc = ctx.value_state("count-sum")?;
        Ok(())
    }

    #[inline]
    fn process_element(
        &mut self,
        (k, v): (u64, i64),
        ctx: &mut KeyedContext<'_, u64, (u64, u64, i64)>,
    ) -> Result<()> {
        let acc = ctx.value_or_insert_with(self.acc, || (0, 0));
        acc.0 += 1;
        acc.1 += v;
        let (c, s) = *acc;
        ctx.emit((k, c, s));
        Ok(())
    }
}

fn rows_groupby(env: &StreamEnv, args: &mut JobArgs) -> Result<()> {
    let records: u64 = args.number("records", 20_000_000, 0, u64::MAX)?;
    let keys: u64 = args.number("keys", 10_000, 1, u64::MAX)?;
    env.add_source("Rows", move || RowSource::new(records, keys))
        .uid("rows")
        .key_by(|r: &(u64, i64)| r.0)
        .process(CountSum::default())
        .name("GroupBy")
        .uid("group-by")
        .sink_to("Discard", BlackholeSink::new)
        .uid("discard");
    Ok(())
}
