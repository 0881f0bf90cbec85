//! The job registry: named job builders compiled into the binary. A submitted job is
//! (name, arguments, configuration, parallelism); every process rebuilds the same graph from
//! it by calling the same builder.

use crate::api::StreamEnv;
use crate::error::{JobError, Result};
use crate::graph::{JobGraph, StreamGraph};
use eddy_core::config::Config;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// What is submitted: enough for any process to rebuild the job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    pub name: String,
    pub args: Vec<String>,
    pub config: Config,
    pub parallelism: u32,
}

/// Builds a job's dataflow into the environment.
pub type JobBuilder = fn(&StreamEnv, &mut JobArgs) -> Result<()>;

#[derive(Clone)]
pub struct JobDefinition {
    pub name: &'static str,
    pub description: &'static str,
    /// One line per argument, e.g. `--input PATH   the text file to count`.
    pub arguments: &'static [&'static str],
    pub build: JobBuilder,
}

#[derive(Clone, Default)]
pub struct JobRegistry {
    jobs: BTreeMap<&'static str, JobDefinition>,
}

impl JobRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register(&mut self, def: JobDefinition) -> &mut Self {
        self.jobs.insert(def.name, def);
        self
    }

    pub fn get(&self, name: &str) -> Option<&JobDefinition> {
        self.jobs.get(name)
    }

    pub fn jobs(&self) -> impl Iterator<Item = &JobDefinition> {
        self.jobs.values()
    }

    fn lookup(&self, name: &str) -> Result<&JobDefinition> {
        self.get(name).ok_or_else(|| {
            let names: Vec<&str> = self.jobs.keys().copied().collect();
            JobError::new(format!(
                "unknown job '{name}': expected one of: {}",
                names.join(", ")
            ))
        })
    }

    /// Runs the job's builder: the stream graph and its chained job graph.
    pub fn build(&self, spec: &JobSpec) -> Result<BuiltJob> {
        let def = self.lookup(&spec.name)?;
        let env = StreamEnv::new(spec.config.clone());
        let mut args = JobArgs::new(def.name, &spec.args)?;
        args.test_hooks_enabled = spec.config.test_hooks_enabled();
        (def.build)(&env, &mut args)?;
        args.finish()?;
        let graph = env.into_graph();
        if graph.nodes.is_empty() {
            return Err(JobError::new(format!(
                "job '{}' built an empty graph",
                spec.name
            )));
        }
        let max_parallelism = spec.config.max_parallelism();
        let job_graph = JobGraph::from_stream_graph(&graph, spec.parallelism, max_parallelism)?;
        Ok(BuiltJob {
            graph: Arc::new(graph),
            job_graph: Arc::new(job_graph),
        })
    }
}

/// A job's graphs, shared by all its tasks in a process.
#[derive(Clone)]
pub struct BuiltJob {
    pub graph: Arc<StreamGraph>,
    pub job_graph: Arc<JobGraph>,
}

/// A job's `--name value` arguments. Builders take what they know; `finish` rejects the rest.
pub struct JobArgs {
    job: String,
    values: BTreeMap<String, String>,
    used: BTreeSet<String>,
    /// The job's `eddy.test-hooks.enabled` (see [`JobArgs::test_hooks`]).
    test_hooks_enabled: bool,
}

impl JobArgs {
    pub fn new(job: &str, args: &[String]) -> Result<Self> {
        let mut values = BTreeMap::new();
        let mut it = args.iter().peekable();
        while let Some(a) = it.next() {
            let Some(name) = a.strip_prefix("--") else {
                return Err(JobError::new(format!(
                    "job '{job}': unexpected argument '{a}': expected --name value pairs"
                )));
            };
            let (name, value) = match name.split_once('=') {
                Some((n, v)) => (n.to_string(), v.to_string()),
                None => match it.peek() {
                    Some(v) if !v.starts_with("--") || v.parse::<f64>().is_ok() => {
                        (name.to_string(), it.next().cloned().unwrap_or_default())
                    }
                    _ => (name.to_string(), "true".to_string()),
                },
            };
            if values.insert(name.clone(), value).is_some() {
                return Err(JobError::new(format!(
                    "job '{job}': argument --{name} given twice"
                )));
            }
        }
        Ok(JobArgs {
            job: job.to_string(),
            values,
            used: BTreeSet::new(),
            test_hooks_enabled: false,
        })
    }

    fn take(&mut self, name: &str) -> Option<String> {
        self.used.insert(name.to_string());
        self.values.get(name).cloned()
    }

    /// Declares the arguments `names` as test hooks (failure injection, artificial delays):
    /// given while the configuration does not set `eddy.test-hooks.enabled: true`, the first
    /// one is a one-line error naming it and the key. Call it before the builder has any effect.
    pub fn test_hooks(&self, names: &[&str]) -> Result<()> {
        if self.test_hooks_enabled {
            return Ok(());
        }
        match names.iter().find(|n| self.values.contains_key(**n)) {
            None => Ok(()),
            Some(name) => Err(JobError::new(format!(
                "job '{}': --{name} is a test hook and test hooks are off: the cluster's configuration must set {}: true",
                self.job,
                eddy_core::faultpoint::KEY
            ))),
        }
    }

    pub fn required(&mut self, name: &str) -> Result<String> {
        self.take(name).ok_or_else(|| {
            JobError::new(format!(
                "job '{}': missing required argument --{name}",
                self.job
            ))
        })
    }

    /// A required file or directory argument. Refuses a path with a `..` component or a
    /// control character (a job submitted over REST must not climb out of the directory it
    /// names, docs/security.md); any other path is the submitter's choice.
    pub fn required_path(&mut self, name: &str) -> Result<String> {
        let path = self.required(name)?;
        let climbs = std::path::Path::new(&path)
            .components()
            .any(|c| c == std::path::Component::ParentDir);
        if climbs || path.chars().any(char::is_control) {
            return Err(JobError::new(format!(
                "job '{}': invalid path '{}' for --{name}: a path may not contain '..' components or control characters",
                self.job,
                path.escape_default()
            )));
        }
        Ok(path)
    }

    pub fn optional(&mut self, name: &str) -> Option<String> {
        self.take(name)
    }

    /// A number argument with a default; the error names the value and the allowed range.
    pub fn number<T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy>(
        &mut self,
        name: &str,
        default: T,
        min: T,
        max: T,
    ) -> Result<T> {
        match self.take(name) {
            None => Ok(default),
            Some(v) => match v.parse::<T>() {
                Ok(n) if n >= min && n <= max => Ok(n),
                _ => Err(JobError::new(format!("job '{}': invalid value '{v}' for --{name}: expected a number in {min}..={max}", self.job))),
            },
        }
    }

    pub fn flag(&mut self, name: &str) -> Result<bool> {
        match self.take(name).as_deref() {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(v) => Err(JobError::new(format!(
                "job '{}': invalid value '{v}' for --{name}: expected true or false",
                self.job
            ))),
        }
    }

    /// Rejects arguments no builder asked for.
    pub fn finish(&self) -> Result<()> {
        let unknown: Vec<&String> = self
            .values
            .keys()
            .filter(|k| !self.used.contains(*k))
            .collect();
        if let Some(k) = unknown.first() {
            let known: Vec<String> = self.used.iter().map(|u| format!("--{u}")).collect();
            return Err(JobError::new(format!(
                "job '{}': unknown argument --{k}: expected one of: {}",
                self.job,
                known.join(", ")
            )));
        }
        Ok(())
    }
}
