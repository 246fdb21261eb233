//! The `aftercare` binary; everything lives in the library so tests can reach it.

fn main() -> std::process::ExitCode {
    aftercare::cli::main()
}
