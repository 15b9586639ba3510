//! Tasks sent ahead to a child, and taken back: a *claim word* per task, in the region the
//! pool and the child share, which each side changes with one compare-and-swap.
//!
//! A child that runs one task at a time would wait for its driver between two: the driver
//! reads the answer, takes the next task and sends it while the child has nothing to do. So
//! while tasks are queued, the driver sends the next one *ahead*. Such a task must not wait
//! behind a long one while another worker could run it, so it is sent with a claim word:
//!
//! - the driver stores `READY(task)` in a free word, then sends the task's `RUN`;
//! - the child, about to run a task, looks for a word that names it: `READY` it turns into
//!   `CLAIMED` and runs the task; `REVOKED` it turns into `SKIPPED` and skips the task; with
//!   no word naming it, the task is an ordinary one, and it runs it;
//! - the driver, when the answer of the task before it is slow to come, takes the task ahead
//!   back (`READY` into `REVOKED`), and the scheduler gives it to another worker.
//!
//! Whichever of the two swaps comes first wins, so a task sent ahead runs once, in the child
//! or elsewhere. A word is free again once the child is done with it (`CLAIMED`, `SKIPPED`,
//! or never used), and only the driver makes it `READY`.
//!
//! A word holds its state in its low three bits and the low 29 bits of the task's id above
//! them. Only `READY` and `REVOKED` words name a task the child has not reached, and the
//! child reaches tasks in the order they were sent, their ids one apart: such a word names a
//! task sent after the one the child reads, fewer than 2^29 tasks later, so it never names
//! that one by mistake. The child may be hostile and write anything: the pool's only
//! reaction to a word is whether its swap succeeds, or whether it may reuse the word.

use std::sync::atomic::{AtomicU32, Ordering};

use super::ring::{Region, CLAIM_LINE};

/// How many tasks may be out ahead at once, counting those taken back that the child has not
/// reached yet.
pub(crate) const CLAIM_WORDS: usize = 4;

const STATE: u32 = 0b111;
const EMPTY: u32 = 0;
const READY: u32 = 1;
const CLAIMED: u32 = 2;
const REVOKED: u32 = 3;
const SKIPPED: u32 = 4;

fn word(task: u64, state: u32) -> u32 {
    (task as u32) << 3 | state
}

fn names(value: u32, task: u64) -> bool {
    value >> 3 == (task as u32) << 3 >> 3
}

/// A task sent ahead, as its driver holds it: which word it claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ahead {
    at: usize,
    task: u64,
}

impl Ahead {
    /// The id of the task sent ahead.
    pub(crate) fn task(self) -> u64 {
        self.task
    }
}

impl Region {
    /// The claim words, the first of the line the region keeps for them.
    fn claim_words(&self) -> &[AtomicU32] {
        const { assert!(CLAIM_WORDS <= CLAIM_LINE) };
        &self.claim_line()[..CLAIM_WORDS]
    }

    /// The pool's side, before it sends `task` ahead: marks it `READY` in a free word, or
    /// `None` if no word is free (it is then sent as an ordinary task).
    pub(crate) fn send_ahead(&self, task: u64) -> Option<Ahead> {
        let words = self.claim_words();
        let at = (0..CLAIM_WORDS).find(|&at| is_free(words[at].load(Ordering::Acquire)))?;
        // Before the `RUN` frame, which the ring publishes with a release: a child that reads
        // the frame finds the word.
        words[at].store(word(task, READY), Ordering::Release);
        Some(Ahead { at, task })
    }

    /// Whether a task could be sent ahead now: a word is free.
    pub(crate) fn can_send_ahead(&self) -> bool {
        let words = self.claim_words();
        words.iter().any(|w| is_free(w.load(Ordering::Acquire)))
    }

    /// The pool's side: `ahead`'s `RUN` was not sent after all (it resolved on its way): its
    /// word is free again (no child ever saw the task).
    pub(crate) fn unsend(&self, ahead: Ahead) {
        let words = self.claim_words();
        let _ = words[ahead.at].compare_exchange(
            word(ahead.task, READY),
            EMPTY,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// The pool's side: takes `ahead` back, if the child has not claimed it. Returns whether
    /// it did: the child will skip it, and the task is the pool's to give to another worker.
    pub(crate) fn take_back(&self, ahead: Ahead) -> bool {
        let words = self.claim_words();
        words[ahead.at]
            .compare_exchange(
                word(ahead.task, READY),
                word(ahead.task, REVOKED),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// The child's side, about to run `task`: whether to run it (an ordinary task, or one
    /// sent ahead and claimed now) or skip it (taken back by the pool).
    pub(crate) fn claim(&self, task: u64) -> bool {
        let words = self.claim_words();
        for slot in words {
            let mut value = slot.load(Ordering::Acquire);
            if !names(value, task) {
                continue;
            }
            if value & STATE == READY {
                match slot.compare_exchange(
                    value,
                    word(task, CLAIMED),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return true,
                    Err(now) => value = now,
                }
            }
            if value == word(task, REVOKED) {
                slot.store(word(task, SKIPPED), Ordering::Release);
                return false;
            }
        }
        true
    }
}

/// Whether the pool may put a new task in a word holding `value`: the child is done with the
/// task it names, or it never named one.
fn is_free(value: u32) -> bool {
    matches!(value & STATE, EMPTY | CLAIMED | SKIPPED)
}

#[cfg(all(test, any(target_os = "linux", windows)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn region() -> Arc<Region> {
        Region::create().expect("a region").0
    }

    #[test]
    fn an_ordinary_task_runs_and_touches_no_word() {
        let region = region();
        assert!(region.claim(7));
        assert!(region
            .claim_words()
            .iter()
            .all(|w| w.load(Ordering::Relaxed) == 0));
    }

    #[test]
    fn a_task_claimed_by_the_child_cannot_be_taken_back() {
        let region = region();
        let ahead = region.send_ahead(5).expect("a free word");
        assert!(region.claim(5));
        assert!(!region.take_back(ahead));
    }

    #[test]
    fn a_task_taken_back_is_skipped_and_its_word_freed_once_the_child_passed_it() {
        let region = region();
        let ahead = region.send_ahead(5).expect("a free word");
        assert!(region.take_back(ahead));
        // Until the child reaches it, the word is the taken-back task's.
        let words: Vec<_> = (0..CLAIM_WORDS - 1)
            .map(|i| region.send_ahead(6 + i as u64))
            .collect();
        assert!(words.iter().all(Option::is_some));
        assert!(!region.can_send_ahead());
        assert!(!region.claim(5));
        assert!(region.can_send_ahead());
        // Claimed tasks free their words too.
        for i in 0..CLAIM_WORDS - 1 {
            assert!(region.claim(6 + i as u64));
        }
        assert_eq!(
            (0..CLAIM_WORDS)
                .filter_map(|i| region.send_ahead(20 + i as u64))
                .count(),
            CLAIM_WORDS
        );
    }

    #[test]
    fn a_task_never_sent_frees_its_word() {
        let region = region();
        let ahead = region.send_ahead(9).expect("a free word");
        region.unsend(ahead);
        assert!(region
            .claim_words()
            .iter()
            .all(|w| w.load(Ordering::Relaxed) == 0));
        // And taking it back now does nothing.
        assert!(!region.take_back(ahead));
    }

    #[test]
    fn ids_that_differ_in_their_high_bits_only_are_told_apart_by_the_state() {
        let region = region();
        // An old claimed task whose low 29 bits equal the new one's.
        let old = region.send_ahead(3).expect("a free word");
        assert!(region.claim(3));
        assert!(!region.take_back(old));
        let task = 3 + (1 << 29);
        let ahead = region.send_ahead(task).expect("a free word");
        assert!(region.take_back(ahead));
        assert!(!region.claim(task));
    }

    #[test]
    fn the_child_and_the_pool_racing_for_a_task_never_both_win() {
        let region = region();
        for task in 0..20_000u64 {
            let ahead = region.send_ahead(task).expect("a free word");
            let child = {
                let region = region.clone();
                std::thread::spawn(move || region.claim(task))
            };
            let pool = region.take_back(ahead);
            let child = child.join().expect("the child's side");
            assert!(pool != child, "task {task}: pool {pool}, child {child}");
        }
    }
}
