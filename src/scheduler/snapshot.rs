//! [`Pool::stats`](crate::Pool::stats): what the workers, their threads and the scheduler
//! measured (see `meter.rs`), added up under the state lock.

use std::time::Instant;

use super::Scheduler;
use crate::stats::{Parts, Stats, WorkerStats};

impl Scheduler {
    /// A snapshot of the pool's statistics (see [`crate::stats`]).
    pub(crate) fn stats(&self) -> Stats {
        let state = self.lock();
        let now = Instant::now();
        let mut counts = state.meter.counts.clone();
        self.tally.add_to(&mut counts);
        for tally in state
            .threads
            .iter()
            .filter_map(|record| record.tally.as_ref())
        {
            tally.add_to(&mut counts);
        }
        let mut timings = state.meter.timings.clone();
        let mut busy_time = state.meter.busy;
        let mut workers = Vec::with_capacity(state.workers.len());
        for worker in &state.workers {
            let busy = worker.meter.busy_time(now);
            busy_time = busy_time.saturating_add(busy);
            if let Some(mine) = &worker.meter.timings {
                timings.merge(mine);
            }
            workers.push(WorkerStats::new(worker.id, worker.meter.tasks, busy));
        }
        drop(state);
        workers.sort_by_key(|worker| worker.id);
        Parts {
            counts,
            timings,
            busy_time,
            duration: now.saturating_duration_since(self.created),
            max_threads: self.options.max_threads,
            workers,
        }
        .stats()
    }
}
