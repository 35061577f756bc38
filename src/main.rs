fn main() {
    std::process::exit(vod_signer::cli::main())
}
