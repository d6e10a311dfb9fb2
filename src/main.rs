//! Thin entry point: parse the command line, run the command, map the outcome
//! to an exit code. Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;

// mimalloc instead of glibc's malloc: a submission is parsed into a tree of
// small allocations and freed a moment later, and glibc's allocator was 15%
// of a backfill's profile (`_int_malloc`, `_int_free`, `malloc_consolidate`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Commit arena memory as it is used, not whole arenas up front: with one
/// heap per thread (runtime workers, SQLite's worker, blocking tasks) eager
/// commit added ~30 MB to a backfill's peak RSS for no speed. The first arena
/// is made by the first allocation, before `main`, so this runs as an ELF
/// constructor (the same as `MIMALLOC_ARENA_EAGER_COMMIT=0`, which still
/// overrides it). 4 is `mi_option_arena_eager_commit` in mimalloc v3's
/// mimalloc.h; the binding names no constant for it.
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static MIMALLOC_LAZY_COMMIT: extern "C" fn() = {
    extern "C" fn set() {
        const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
        // SAFETY: sets an integer option; mimalloc allows it at any time.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0) };
    }
    set
};

fn main() -> ExitCode {
    let cli = kyc_sentinel::cli::Cli::parse();
    match kyc_sentinel::commands::dispatch(cli) {
        Ok(code) => code,
        Err(err) => {
            // `{:#}` prints the whole context chain on one line: the file,
            // request or submission the error came from is in that chain.
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}
