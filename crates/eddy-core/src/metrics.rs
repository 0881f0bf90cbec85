//! The one place that defines how Eddy names and writes Prometheus metrics, for the JobManager
//! (`eddy-rest`'s `/metrics` on `rest.port`) and every TaskManager (`/metrics` on
//! `metrics.reporter.prom.port`): the naming rule, the text exposition format (0.0.4), the
//! TaskManager's families and the process families both write.
//!
//! Naming: `eddy_<component>_<noun>[_<unit>][_total]`; `<component>` is `jobmanager`,
//! `taskmanager`, `job`, `task` or `process`; `_total` only on counters (Prometheus reserves it
//! for them). Labels: `job_id`, `job_name`, `state`, `vertex_id`, `vertex`, `subtask`,
//! `taskmanager_id`. Nothing here invents a sample: a value Eddy does not know is left out.

use serde::{Deserialize, Serialize};
use std::fmt::Write;

/// The `Content-Type` of `/metrics`.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
}

impl MetricType {
    pub fn name(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
        }
    }
}

/// One metric family.
#[derive(Clone, Copy, Debug)]
pub struct Metric {
    pub name: &'static str,
    pub kind: MetricType,
    pub help: &'static str,
}

pub const fn gauge(name: &'static str, help: &'static str) -> Metric {
    Metric {
        name,
        kind: MetricType::Gauge,
        help,
    }
}

pub const fn counter(name: &'static str, help: &'static str) -> Metric {
    Metric {
        name,
        kind: MetricType::Counter,
        help,
    }
}

pub const fn histogram(name: &'static str, help: &'static str) -> Metric {
    Metric {
        name,
        kind: MetricType::Histogram,
        help,
    }
}

/// A Prometheus histogram of whole numbers (ms, bytes), kept where the observations happen and
/// written by [`write_histograms`]. `counts[i]`: observations `<= bounds[i]` and above the
/// previous bound; the last entry counts those above every bound.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Histogram {
    pub bounds: Vec<u64>,
    pub counts: Vec<u64>,
    pub sum: u64,
    pub count: u64,
}

impl Histogram {
    pub fn new(bounds: &[u64]) -> Self {
        Histogram {
            bounds: bounds.to_vec(),
            counts: vec![0; bounds.len() + 1],
            sum: 0,
            count: 0,
        }
    }

    pub fn observe(&mut self, value: u64) {
        if self.counts.len() != self.bounds.len() + 1 {
            self.counts = vec![0; self.bounds.len() + 1];
        }
        let i = self.bounds.partition_point(|b| *b < value);
        self.counts[i] += 1;
        self.sum = self.sum.saturating_add(value);
        self.count += 1;
    }
}

/// Bounds of duration histograms, in ms (written in seconds).
pub const DURATION_BOUNDS_MS: [u64; 12] = [
    10, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 300_000,
];
/// Bounds of size histograms, in bytes.
pub const SIZE_BOUNDS_BYTES: [u64; 8] = [
    1 << 10,
    16 << 10,
    256 << 10,
    1 << 20,
    16 << 20,
    256 << 20,
    1 << 30,
    16 << 30,
];

/// Writes a histogram family: `_bucket{le=...}` (cumulative, `+Inf` last), `_sum` and `_count`
/// per labelled histogram; values and bounds are multiplied by `scale` (e.g. 0.001: ms → s).
pub fn write_histograms(
    out: &mut String,
    m: &Metric,
    samples: Vec<(Vec<(&'static str, &str)>, &Histogram)>,
    scale: f64,
) {
    let _ = writeln!(out, "# HELP {} {}", m.name, m.help);
    let _ = writeln!(out, "# TYPE {} {}", m.name, m.kind.name());
    let number = |v: f64| {
        let s = format!("{v:.6}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    };
    for (labels, h) in samples {
        let labels_with = |extra: Option<(&str, &str)>| {
            let mut parts: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
                .collect();
            if let Some((k, v)) = extra {
                parts.push(format!("{k}=\"{v}\""));
            }
            if parts.is_empty() {
                String::new()
            } else {
                format!("{{{}}}", parts.join(","))
            }
        };
        let mut cumulative = 0;
        for (i, bound) in h.bounds.iter().enumerate() {
            cumulative += h.counts.get(i).copied().unwrap_or(0);
            let le = number(*bound as f64 * scale);
            let _ = writeln!(
                out,
                "{}_bucket{} {cumulative}",
                m.name,
                labels_with(Some(("le", &le)))
            );
        }
        let _ = writeln!(
            out,
            "{}_bucket{} {}",
            m.name,
            labels_with(Some(("le", "+Inf"))),
            h.count
        );
        let _ = writeln!(
            out,
            "{}_sum{} {}",
            m.name,
            labels_with(None),
            number(h.sum as f64 * scale)
        );
        let _ = writeln!(out, "{}_count{} {}", m.name, labels_with(None), h.count);
    }
}

/// Whether `m` follows the naming rule above.
pub fn follows_naming_scheme(m: &Metric) -> bool {
    let component = ["jobmanager", "taskmanager", "job", "task", "process"]
        .iter()
        .any(|c| m.name.starts_with(&format!("eddy_{c}_")));
    component && m.name.ends_with("_total") == (m.kind == MetricType::Counter)
}

/// One sample: label pairs and the value as written.
pub type Sample<'a> = (Vec<(&'static str, &'a str)>, String);

/// Writes one family: `# HELP`, `# TYPE` (even with no samples, so scrapers see every name from
/// the first scrape), then its samples.
pub fn write_family(out: &mut String, m: &Metric, samples: Vec<Sample<'_>>) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP {} {}", m.name, m.help);
    let _ = writeln!(out, "# TYPE {} {}", m.name, m.kind.name());
    for (labels, value) in samples {
        out.push_str(m.name);
        if !labels.is_empty() {
            out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{k}=\"{}\"", escape_label(v));
            }
            out.push('}');
        }
        let _ = writeln!(out, " {value}");
    }
}

/// Label values escape backslash, double quote and newline.
pub fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

pub const PROCESS_RESIDENT_MEMORY: Metric = gauge(
    "eddy_process_resident_memory_bytes",
    "Resident set size of this process (Linux /proc/self/statm).",
);
pub const PROCESS_CPU: Metric = counter(
    "eddy_process_cpu_seconds_total",
    "User and system CPU time of this process (Linux /proc/self/stat).",
);

pub const TASKMANAGER_SLOTS: Metric = gauge(
    "eddy_taskmanager_slots",
    "Task slots this TaskManager offers.",
);
pub const TASKMANAGER_TASKS: Metric = gauge(
    "eddy_taskmanager_tasks",
    "Subtasks deployed on this TaskManager whose thread has not ended.",
);
pub const TASKMANAGER_HEARTBEATS: Metric = counter(
    "eddy_taskmanager_heartbeats_sent_total",
    "Heartbeats this TaskManager sent to its JobManager.",
);
pub const TASKMANAGER_REGISTRATIONS: Metric = counter(
    "eddy_taskmanager_registrations_total",
    "Times this TaskManager registered with a JobManager (the first one, then after each reconnect or leader change).",
);
pub const TASK_RECORDS_IN: Metric = counter(
    "eddy_task_records_in_total",
    "Records received by a subtask (current attempt).",
);
pub const TASK_RECORDS_OUT: Metric = counter(
    "eddy_task_records_out_total",
    "Records emitted by a subtask (current attempt).",
);

pub const TASK_BACKPRESSURED_TIME: Metric = counter(
    "eddy_task_backpressured_seconds_total",
    "Time a subtask waited for credit on an output channel since it started running (Flink's accumulated back-pressured time).",
);
pub const TASK_IDLE_TIME: Metric = counter(
    "eddy_task_idle_seconds_total",
    "Time a subtask waited for input (or a source for its next record to be due) since it started running.",
);
pub const TASK_BUSY_TIME: Metric = counter(
    "eddy_task_busy_seconds_total",
    "Running time of a subtask neither back-pressured nor idle.",
);
pub const TASK_BACKPRESSURE_RATIO: Metric = gauge(
    "eddy_task_backpressure_ratio",
    "Share of time (0..1) a subtask was back-pressured between its TaskManager's last two heartbeats (Flink's backPressuredTimeMsPerSecond / 1000).",
);

/// Every family a TaskManager's `/metrics` writes, in output order.
pub const TASKMANAGER_FAMILIES: [Metric; 12] = [
    TASKMANAGER_SLOTS,
    TASKMANAGER_TASKS,
    TASKMANAGER_HEARTBEATS,
    TASKMANAGER_REGISTRATIONS,
    TASK_RECORDS_IN,
    TASK_RECORDS_OUT,
    TASK_BACKPRESSURED_TIME,
    TASK_IDLE_TIME,
    TASK_BUSY_TIME,
    TASK_BACKPRESSURE_RATIO,
    PROCESS_RESIDENT_MEMORY,
    PROCESS_CPU,
];

/// Writes the process families (RSS and CPU time) from `/proc/self`; a value that cannot be
/// read (not Linux) is left out.
pub fn write_process_families(out: &mut String) {
    let (rss, cpu) = process_sample();
    write_family(
        out,
        &PROCESS_RESIDENT_MEMORY,
        rss.map(|b| (vec![], b.to_string())).into_iter().collect(),
    );
    write_family(
        out,
        &PROCESS_CPU,
        cpu.map(|s| (vec![], format!("{s:.2}")))
            .into_iter()
            .collect(),
    );
}

/// This process's resident bytes and CPU seconds (user + system), from `/proc/self`.
fn process_sample() -> (Option<u64>, Option<f64>) {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let rss = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .filter(|_| page > 0)
        .map(|pages| pages * page as u64);
    // Fields after the `(comm)`, which may itself contain spaces: utime and stime are the 14th
    // and 15th fields of the line, the 12th and 13th after the closing parenthesis.
    let cpu = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let utime: u64 = f.get(11)?.parse().ok()?;
            let stime: u64 = f.get(12)?.parse().ok()?;
            (ticks > 0).then(|| (utime + stime) as f64 / ticks as f64)
        });
    (rss, cpu)
}

/// Parses `metrics.reporter.prom.port`: a port or a range `FROM-TO` (Flink's syntax).
pub fn parse_port_range(value: &str) -> Result<(u16, u16), String> {
    let bad = || {
        format!(
            "invalid value '{value}' for metrics.reporter.prom.port: expected a port (1-65535) or a range FROM-TO such as 9250-9260"
        )
    };
    let v = value.trim();
    let (from, to) = match v.split_once('-') {
        Some((a, b)) => (a.trim(), b.trim()),
        None => (v, v),
    };
    let from: u16 = from.parse().map_err(|_| bad())?;
    let to: u16 = to.parse().map_err(|_| bad())?;
    if from == 0 || to < from {
        return Err(bad());
    }
    Ok((from, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taskmanager_families_follow_the_naming_scheme() {
        for m in TASKMANAGER_FAMILIES {
            assert!(follows_naming_scheme(&m), "{}", m.name);
        }
        assert!(!follows_naming_scheme(&counter("eddy_job_restarts", "x")));
        assert!(!follows_naming_scheme(&gauge("other_job_x", "x")));
    }

    #[test]
    fn histograms_are_cumulative_with_inf_sum_and_count() {
        let mut h = Histogram::new(&[100, 1_000]);
        for v in [50, 100, 101, 5_000] {
            h.observe(v);
        }
        let mut out = String::new();
        let m = histogram("eddy_job_x_seconds", "x");
        assert!(follows_naming_scheme(&m));
        write_histograms(&mut out, &m, vec![(vec![("job_id", "j")], &h)], 0.001);
        assert_eq!(
            out,
            "# HELP eddy_job_x_seconds x\n# TYPE eddy_job_x_seconds histogram\n\
             eddy_job_x_seconds_bucket{job_id=\"j\",le=\"0.1\"} 2\n\
             eddy_job_x_seconds_bucket{job_id=\"j\",le=\"1\"} 3\n\
             eddy_job_x_seconds_bucket{job_id=\"j\",le=\"+Inf\"} 4\n\
             eddy_job_x_seconds_sum{job_id=\"j\"} 5.251\n\
             eddy_job_x_seconds_count{job_id=\"j\"} 4\n"
        );
    }

    #[test]
    fn port_ranges_parse_and_bad_values_are_named() {
        assert_eq!(parse_port_range("9250"), Ok((9250, 9250)));
        assert_eq!(parse_port_range(" 9250-9260 "), Ok((9250, 9260)));
        for bad in ["", "0", "x", "9260-9250", "70000", "1-2-3"] {
            let e = parse_port_range(bad).unwrap_err();
            assert!(
                e.contains(&format!("'{bad}'")) && e.contains("metrics.reporter.prom.port"),
                "{e}"
            );
        }
    }

    #[test]
    fn this_process_reports_rss_and_cpu() {
        let mut out = String::new();
        write_process_families(&mut out);
        assert!(
            out.contains("\neddy_process_resident_memory_bytes "),
            "{out}"
        );
        assert!(out.contains("\neddy_process_cpu_seconds_total "), "{out}");
    }
}
