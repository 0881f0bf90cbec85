//! The `eddy` binary: the built-in jobs plus the command line.
fn main() {
    std::process::exit(eddy::cli::main_with(eddy::builtin_jobs()));
}
