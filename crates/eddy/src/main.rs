//! The `eddy` binary: the built-in jobs plus the command line.

/// Records are small and short-lived (batches of Strings and tuples moving between operators);
/// mimalloc's thread-local free lists make that allocation pattern markedly cheaper than glibc's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(eddy::cli::main_with(eddy::builtin_jobs()));
}
