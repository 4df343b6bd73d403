fn main() {
    eprintln!("orbstrike-gameserver: not built yet");
    std::process::exit(2);
}
