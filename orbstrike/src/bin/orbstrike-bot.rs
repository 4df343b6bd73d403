fn main() {
    eprintln!("orbstrike-bot: not built yet");
    std::process::exit(2);
}
