//! `cargo run --example server -- <NAME> [options]`: the same server as `flock server`
//! (see `flock server --help` for the options).

fn main() -> std::process::ExitCode {
    flock_bin::server::main_from_env()
}
