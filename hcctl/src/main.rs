//! `hcctl`, the HyperCache command line. All logic lives in the library, [`hcctl::main`].

fn main() -> std::process::ExitCode {
    hcctl::main()
}
