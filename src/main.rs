// mimalloc: rekey allocates many small, short-lived buffers per request; the system
// allocator spent ~10% of apply's CPU on them (perf, scripts/bench-apply.sh).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(rekey::cli::main());
}
