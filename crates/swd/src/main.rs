//! `swd`: the streamweave-distributed command line. All the work is in the `swd` library so a
//! user's own binary can offer the same commands.

/// mimalloc rather than glibc's malloc. A worker frees millions of small allocations at once
/// when a partition's state goes (a key longer than 14 bytes is one allocation), and glibc,
/// freeing them, held up the worker's other threads for seconds: a worker that had just handed
/// a 100 MB partition over missed its heartbeats and was declared failed. mimalloc frees
/// another thread's allocation without taking a lock of that thread's heap.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    swd::main()
}
