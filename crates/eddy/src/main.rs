//! The `eddy` binary: the built-in jobs plus the command line.

/// Records are small and short-lived (batches of Strings and tuples moving between operators);
/// mimalloc's thread-local free lists make that allocation pattern markedly cheaper than glibc's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    no_transparent_huge_pages();
    std::process::exit(eddy::cli::main_with(eddy::builtin_jobs()));
}

/// Turns transparent huge pages off for this process and the ones it starts (the flag is
/// inherited), as `MIMALLOC_ALLOW_THP=0` would. mimalloc asks for huge pages on its arenas, so
/// every thread's first allocations faulted in (and zeroed) 2 MiB pages: a TaskManager starting
/// 8 task threads among 100 on 2 cores spent most of its time there, and held twice the memory
/// (bench/RESULTS-scale.md, "Huge pages"). Best effort: without the call, only speed and memory
/// differ.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes plain integer arguments and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}
