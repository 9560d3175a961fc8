//! `swd`: the streamweave-distributed command line. All the work is in the `swd` library so a
//! user's own binary can offer the same commands.

fn main() -> std::process::ExitCode {
    swd::main()
}
