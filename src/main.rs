fn main() -> std::process::ExitCode {
    pynish::main()
}
