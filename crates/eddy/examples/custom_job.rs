//! A user's own job binary: Eddy embedded as a library, with one extra job registered next to
//! the built-in ones. Every `eddy` command works with it, e.g.
//!
//! ```text
//! cargo run --release -p eddy --example custom_job -- local hello-keyed --output /tmp/hello -p 2
//! ```

use eddy::connectors::{FileSink, SequenceSource};
use eddy::state::ValueState;
use eddy::{
    JobArgs, JobDefinition, JobError, KeyedContext, KeyedOpenContext, KeyedProcessFunction,
    StreamEnv,
};

/// Keeps the largest sequence number seen per key and emits `key: max` whenever it grows.
#[derive(Clone, Default)]
struct MaxPerKey {
    max: ValueState<u64>,
}

impl KeyedProcessFunction<u64, (u64, u64), String> for MaxPerKey {
    fn open(&mut self, ctx: &mut KeyedOpenContext<'_, u64>) -> Result<(), JobError> {
        self.max = ctx.value_state("max")?;
        Ok(())
    }

    fn process_element(
        &mut self,
        (key, seq): (u64, u64),
        ctx: &mut KeyedContext<'_, u64, String>,
    ) -> Result<(), JobError> {
        let max = ctx.value_or_insert_with(self.max, || 0);
        if seq > *max {
            *max = seq;
            ctx.emit(format!("{key}: {seq}"));
        }
        Ok(())
    }
}

/// The job: a generated (key, seq) stream, keyed by key, through `MaxPerKey`, into files.
fn hello_keyed(env: &StreamEnv, args: &mut JobArgs) -> Result<(), JobError> {
    let output = args.required("output")?;
    let keys: u64 = args.number("keys", 10, 1, 1_000_000)?;
    env.add_source("Sequence", move || SequenceSource::new(keys, 100, 0.0))
        .key_by(|r: &(u64, u64)| r.0)
        .process(MaxPerKey::default())
        .uid("max-per-key")
        .sink_to("Files", move || FileSink::new(output.clone()));
    Ok(())
}

fn main() {
    let mut registry = eddy::builtin_jobs();
    registry.register(JobDefinition {
        name: "hello-keyed",
        description: "example: the largest seq per key, written whenever it grows",
        arguments: &[
            "--output DIR   where committed part files go",
            "--keys K       number of keys (default 10)",
        ],
        build: hello_keyed,
    });
    std::process::exit(eddy::cli::main_with(registry));
}
