//! The one place that defines how Eddy names and writes Prometheus metrics, for the JobManager
//! (`eddy-rest`'s `/metrics` on `rest.port`) and every TaskManager (`/metrics` on
//! `metrics.reporter.prom.port`): the naming rule, the text exposition format (0.0.4), the
//! TaskManager's families and the process families both write.
//!
//! Naming: `eddy_<component>_<noun>[_<unit>][_total]`; `<component>` is `jobmanager`,
//! `taskmanager`, `job`, `task` or `process`; `_total` only on counters (Prometheus reserves it
//! for them). Labels: `job_id`, `job_name`, `state`, `vertex_id`, `vertex`, `subtask`,
//! `taskmanager_id`. Nothing here invents a sample: a value Eddy does not know is left out.

use std::fmt::Write;

/// The `Content-Type` of `/metrics`.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
}

impl MetricType {
    pub fn name(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
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

/// Every family a TaskManager's `/metrics` writes, in output order.
pub const TASKMANAGER_FAMILIES: [Metric; 8] = [
    TASKMANAGER_SLOTS,
    TASKMANAGER_TASKS,
    TASKMANAGER_HEARTBEATS,
    TASKMANAGER_REGISTRATIONS,
    TASK_RECORDS_IN,
    TASK_RECORDS_OUT,
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
