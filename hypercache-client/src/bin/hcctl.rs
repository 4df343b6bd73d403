//! `hcctl`, the HyperCache command line. All logic lives in [`hypercache_client::cli`].

fn main() -> std::process::ExitCode {
    hypercache_client::cli::main()
}
