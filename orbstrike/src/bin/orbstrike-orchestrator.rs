fn main() {
    eprintln!("orbstrike-orchestrator: not built yet");
    std::process::exit(2);
}
