//! `tinypool-bench-worker`: a worker executable with nothing but the benchmark's exports, for
//! `tinypool-process-exe` (the pool's `filename`). It starts faster and holds less memory than
//! the whole driver re-executed, as a dedicated worker binary would in a user's program.

mod worker;

fn main() {
    worker::init_fault();
    worker::init_heap();
    tinypool::worker::serve_if_worker(worker::exports());
    eprintln!("tinypool-bench-worker: started by a tinypool pool only");
    std::process::exit(2);
}
