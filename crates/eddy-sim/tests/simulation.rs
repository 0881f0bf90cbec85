//! The seeded simulation of Eddy's sans-IO cores (see `eddy_sim`): by default 10,000 seeds from
//! base seed 0. `EDDY_SIM_SEEDS` and `EDDY_SIM_BASE_SEED` change the range; `EDDY_SIM_SEED=<n>`
//! runs that one seed and prints its event trace.

use eddy_sim::{replay_command, run_seed, SimFailure};

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    match v.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => panic!("{name}={v:?} is not a whole number; expected e.g. {name}=1000"),
    }
}

fn report(f: &SimFailure) -> String {
    format!(
        "seed {} violated an invariant: {}\n--- event trace ---\n{}\n--- replay with ---\n{}",
        f.seed,
        f.message,
        f.trace.join("\n"),
        replay_command(f.seed)
    )
}

#[test]
fn simulation() {
    if let Some(seed) = env_u64("EDDY_SIM_SEED") {
        match eddy_sim::world::run_seed_with(seed, Default::default(), true) {
            Ok(o) => println!("seed {seed} passed: {o:?}"),
            Err(f) => panic!("{}", report(&f)),
        }
        return;
    }
    let count = env_u64("EDDY_SIM_SEEDS").unwrap_or(10_000);
    let base = env_u64("EDDY_SIM_BASE_SEED").unwrap_or(0);
    let started = std::time::Instant::now();
    let (mut events, mut faults, mut finished) = (0u64, 0u64, 0u64);
    let (mut leaders, mut fenced, mut restores, mut checkpoints) = (0u64, 0u64, 0u64, 0u64);
    for seed in base..base + count {
        match run_seed(seed) {
            Ok(o) => {
                events += o.events;
                faults += u64::from(o.faults);
                finished += u64::from(o.final_status == "FINISHED");
                leaders += o.leaders;
                fenced += o.fenced;
                restores += o.restores;
                checkpoints += o.completed_checkpoints as u64;
            }
            Err(f) => panic!("{}", report(&f)),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "simulation: seeds={count} base={base} events={events} faults={faults} finished={finished} leaders={leaders} fenced_writes={fenced} restored_deployments={restores} completed_checkpoints={checkpoints} seconds={secs:.2} seeds_per_second={:.0}",
        count as f64 / secs.max(1e-9)
    );
}

/// Seeds that found bugs in main, pinned (they also lie in the default range).
#[test]
fn pinned_seeds() {
    // 125: a restart waiting for replacement slots past slot.request.timeout failed the job
    // inside the Restore command; its checkpoints were discarded and ReleaseSlots ran before the
    // result was recorded, so the next leader would run the FAILED job again from nothing.
    for seed in [125] {
        if let Err(f) = run_seed(seed) {
            panic!("{}", report(&f));
        }
    }
}
