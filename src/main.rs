fn main() {
    std::process::exit(rekey::cli::main());
}
