//! The `aftercare` binary; everything lives in the library so tests can reach it.

/// mimalloc: see Cargo.toml and .cargo/config.toml for why and how it is built.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    aftercare::cli::main()
}
