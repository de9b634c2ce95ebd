//! Reading under a time limit: CPU-bound work on threads of its own, each item given at most a fixed time,
//! and nothing ever waiting for an item that takes longer.
//!
//! The parsers are linear in their input, so a message is read in milliseconds; this is the second line
//! of defence, for a shape nobody thought of. Each item (a message to decode and read) runs on a plain
//! `std::thread`, not on the async runtime: a runaway item never holds a runtime worker that other boards'
//! mail, the case clock or shutdown need, and the runtime does not wait for it when it shuts down (it
//! waits for `spawn_blocking` tasks). The caller awaits the results on a channel with a deadline per item.
//! An item past its deadline is given up ([`Timed::Overran`]): its thread is abandoned, left to finish on
//! its own (a thread cannot be stopped from outside), and a fresh thread takes the items still waiting.
//! Abandoned threads still running are counted; at [`Timebox::max_abandoned`] no new thread is started and
//! the items not yet begun come back [`Timed::Busy`], to be tried again later.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

/// What became of one item.
#[derive(Debug)]
pub enum Timed<T> {
    /// Done within the limit.
    Done(T),
    /// Still running when its time was up: given up, its thread abandoned.
    Overran,
    /// Not started: too many abandoned threads are still running.
    Busy,
    /// The work panicked (the text of the panic).
    Panicked(String),
}

/// Runs work under a time limit per item, on threads of its own. Cloning shares the count of abandoned
/// threads.
#[derive(Debug, Clone)]
pub struct Timebox {
    limit: Duration,
    max_abandoned: usize,
    abandoned: Arc<AtomicUsize>,
}

/// A worker thread's state, as the caller and the thread agree on it.
const RUNNING: u8 = 0;
const ENDED: u8 = 1;
const ABANDONED: u8 = 2;

/// What a worker tells the caller.
enum Note<T> {
    Started { worker: usize, item: usize, at: Instant },
    Finished { worker: usize, item: usize, out: Timed<T> },
}

/// The items and the work, shared by the workers.
struct Shared<I, T> {
    items: Vec<I>,
    work: Arc<dyn Fn(&I) -> T + Send + Sync>,
    /// The next item not yet taken.
    next: AtomicUsize,
    /// Set when the caller stops waiting (its future dropped): no worker takes another item.
    cancelled: AtomicBool,
}

impl Timebox {
    /// Each item gets `limit`; at most `max_abandoned` abandoned threads may still be running.
    pub fn new(limit: Duration, max_abandoned: usize) -> Self {
        Timebox {
            limit,
            max_abandoned,
            abandoned: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The time each item gets.
    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// How many abandoned threads may still be running before no new one starts.
    pub fn max_abandoned(&self) -> usize {
        self.max_abandoned
    }

    /// How many abandoned threads are still running.
    pub fn abandoned(&self) -> usize {
        self.abandoned.load(Ordering::SeqCst)
    }

    /// Run `work` on every item, on up to `threads` threads, each item within the limit; the results in the
    /// items' order. Awaiting this never blocks the runtime, and dropping it stops the workers taking
    /// further items.
    pub async fn run_all<I, T>(
        &self,
        items: Vec<I>,
        threads: usize,
        work: Arc<dyn Fn(&I) -> T + Send + Sync>,
    ) -> Vec<Timed<T>>
    where
        I: Send + Sync + 'static,
        T: Send + 'static,
    {
        let n = items.len();
        let mut results: Vec<Option<Timed<T>>> = (0..n).map(|_| None).collect();
        if n == 0 {
            return Vec::new();
        }
        let shared = Arc::new(Shared {
            items,
            work,
            next: AtomicUsize::new(0),
            cancelled: AtomicBool::new(false),
        });
        let (tx, mut rx) = mpsc::unbounded_channel::<Note<T>>();
        let mut run = Run {
            timebox: self,
            shared: shared.clone(),
            tx: Some(tx),
            workers: Vec::new(),
            complete: false,
        };
        for _ in 0..threads.clamp(1, n) {
            run.start_worker();
        }
        // Per worker, the item in hand and when it started.
        let mut in_hand: Vec<Option<(usize, Instant)>> = Vec::new();
        let mut resolved = 0;
        loop {
            // Items still waiting with no worker left to take them get one, or are not read now.
            resolved += run.keep_going(&mut results);
            if resolved >= n {
                break;
            }
            let deadline = in_hand.iter().flatten().map(|(_, at)| *at + self.limit).min();
            let note = match deadline {
                Some(d) => tokio::time::timeout_at(d.into(), rx.recv()).await.ok(),
                None => Some(rx.recv().await),
            };
            match note {
                Some(Some(note)) => resolved += take(note, &mut in_hand, &mut results),
                // Every sender gone: cannot happen while `run` holds one.
                Some(None) => break,
                None => {
                    // Time is up for some item: first take what has already arrived.
                    while let Ok(note) = rx.try_recv() {
                        resolved += take(note, &mut in_hand, &mut results);
                    }
                    let now = Instant::now();
                    for (worker, hand) in in_hand.iter_mut().enumerate() {
                        let Some((item, at)) = *hand else { continue };
                        if now < at + self.limit {
                            continue;
                        }
                        *hand = None;
                        if let Some(r @ None) = results.get_mut(item) {
                            *r = Some(Timed::Overran);
                            resolved += 1;
                        }
                        run.abandon(worker);
                    }
                }
            }
        }
        run.complete = true;
        results.into_iter().map(|r| r.unwrap_or(Timed::Busy)).collect()
    }
}

/// Take a worker's note: an item started, or finished (its result kept unless it was given up already).
/// How many items that resolved.
fn take<T>(note: Note<T>, in_hand: &mut Vec<Option<(usize, Instant)>>, results: &mut [Option<Timed<T>>]) -> usize {
    match note {
        Note::Started { worker, item, at } => {
            if in_hand.len() <= worker {
                in_hand.resize(worker + 1, None);
            }
            if let Some(hand) = in_hand.get_mut(worker) {
                *hand = Some((item, at));
            }
            0
        }
        Note::Finished { worker, item, out } => {
            if let Some(hand) = in_hand.get_mut(worker) {
                if hand.is_some_and(|(i, _)| i == item) {
                    *hand = None;
                }
            }
            match results.get_mut(item) {
                Some(r @ None) => {
                    *r = Some(out);
                    1
                }
                _ => 0,
            }
        }
    }
}

/// One call of [`Timebox::run_all`]: its workers, and what happens to them when the call ends.
struct Run<'a, I, T> {
    timebox: &'a Timebox,
    shared: Arc<Shared<I, T>>,
    /// The caller's sender, cloned for each worker.
    tx: Option<mpsc::UnboundedSender<Note<T>>>,
    /// Each worker's state (`RUNNING`, `ENDED`, `ABANDONED`).
    workers: Vec<Arc<AtomicU8>>,
    /// Every item resolved: no worker holds one.
    complete: bool,
}

impl<I, T> Run<'_, I, T>
where
    I: Send + Sync + 'static,
    T: Send + 'static,
{
    /// Start a worker, unless too many abandoned ones are still running. Whether one started.
    fn start_worker(&mut self) -> bool {
        if self.timebox.abandoned() >= self.timebox.max_abandoned {
            return false;
        }
        let Some(tx) = self.tx.clone() else {
            return false;
        };
        let id = self.workers.len();
        let state = Arc::new(AtomicU8::new(RUNNING));
        let (shared, abandoned, mine) = (self.shared.clone(), self.timebox.abandoned.clone(), state.clone());
        let started = std::thread::Builder::new()
            .name("escbot-reader".into())
            .spawn(move || worker(id, shared, tx, mine, abandoned));
        match started {
            Ok(_) => {
                self.workers.push(state);
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "a reading thread could not be started");
                false
            }
        }
    }

    /// Give up on `worker`: it is left to finish the item in hand, then ends, taking no other.
    fn abandon(&mut self, worker: usize) {
        if let Some(state) = self.workers.get(worker) {
            if state
                .compare_exchange(RUNNING, ABANDONED, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                self.timebox.abandoned.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    /// With items still waiting and no worker left to take them, start one; when none may start, the
    /// waiting items are not read now ([`Timed::Busy`]). How many items that resolved.
    fn keep_going(&mut self, results: &mut [Option<Timed<T>>]) -> usize {
        let n = self.shared.items.len();
        if self.shared.next.load(Ordering::SeqCst) >= n {
            return 0;
        }
        let live = self.workers.iter().any(|s| s.load(Ordering::SeqCst) == RUNNING);
        if live || self.start_worker() {
            return 0;
        }
        // No worker will take them: claim them all, so that none starts now, and say so.
        let from = self.shared.next.swap(n, Ordering::SeqCst).min(n);
        let mut resolved = 0;
        for r in results.iter_mut().skip(from) {
            if r.is_none() {
                *r = Some(Timed::Busy);
                resolved += 1;
            }
        }
        resolved
    }
}

impl<I, T> Drop for Run<'_, I, T> {
    /// The call is over (done, or its future dropped): no worker takes another item; when it was dropped
    /// before the end, a worker still running is abandoned.
    fn drop(&mut self) {
        self.shared.cancelled.store(true, Ordering::SeqCst);
        self.tx = None;
        if self.complete {
            return;
        }
        for state in &self.workers {
            if state
                .compare_exchange(RUNNING, ABANDONED, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                self.timebox.abandoned.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

/// A worker: take the next item, say when it started, do it, say what came of it; until no item is left,
/// the caller stops waiting, or it is abandoned.
fn worker<I, T>(
    id: usize,
    shared: Arc<Shared<I, T>>,
    tx: mpsc::UnboundedSender<Note<T>>,
    state: Arc<AtomicU8>,
    abandoned: Arc<AtomicUsize>,
) {
    loop {
        if state.load(Ordering::SeqCst) != RUNNING || shared.cancelled.load(Ordering::SeqCst) {
            break;
        }
        let item = shared.next.fetch_add(1, Ordering::SeqCst);
        let Some(input) = shared.items.get(item) else {
            break;
        };
        if tx
            .send(Note::Started {
                worker: id,
                item,
                at: Instant::now(),
            })
            .is_err()
        {
            break;
        }
        let out = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (shared.work)(input))) {
            Ok(out) => Timed::Done(out),
            Err(panic) => Timed::Panicked(
                panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic without a message".into()),
            ),
        };
        if tx.send(Note::Finished { worker: id, item, out }).is_err() {
            break;
        }
    }
    // Whoever abandoned this worker counted it; it is no longer running.
    if state.swap(ENDED, Ordering::SeqCst) == ABANDONED {
        abandoned.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spin(ms: u64) {
        let until = Instant::now() + Duration::from_millis(ms);
        while Instant::now() < until {
            std::hint::spin_loop();
        }
    }

    #[tokio::test]
    async fn every_item_is_done_in_order_within_the_limit() {
        let tb = Timebox::new(Duration::from_secs(5), 2);
        let out = tb.run_all((0..50u32).collect(), 3, Arc::new(|i: &u32| i * 2)).await;
        let values: Vec<u32> = out
            .into_iter()
            .map(|t| match t {
                Timed::Done(v) => v,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(values, (0..50).map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(tb.abandoned(), 0);
    }

    #[tokio::test]
    async fn a_runaway_item_is_given_up_and_the_others_still_done() {
        let tb = Timebox::new(Duration::from_millis(200), 2);
        let started = Instant::now();
        let out = tb
            .run_all(
                vec![1u64, 3_000, 1, 1, 1],
                1,
                Arc::new(|ms: &u64| {
                    spin(*ms);
                    *ms
                }),
            )
            .await;
        // Nobody waited for the runaway: well under its 3 s.
        assert!(
            started.elapsed() < Duration::from_millis(2_000),
            "{:?}",
            started.elapsed()
        );
        assert!(matches!(out[1], Timed::Overran), "{:?}", out[1]);
        for i in [0, 2, 3, 4] {
            assert!(matches!(out[i], Timed::Done(1)), "{i}: {:?}", out[i]);
        }
        assert_eq!(tb.abandoned(), 1);
        // The abandoned thread ends on its own, and is no longer counted.
        let until = Instant::now() + Duration::from_secs(10);
        while tb.abandoned() > 0 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(tb.abandoned(), 0);
    }

    #[tokio::test]
    async fn past_the_cap_of_abandoned_threads_items_wait() {
        let tb = Timebox::new(Duration::from_millis(100), 1);
        let out = tb
            .run_all(
                vec![2_000u64, 1, 1],
                1,
                Arc::new(|ms: &u64| {
                    spin(*ms);
                    *ms
                }),
            )
            .await;
        assert!(matches!(out[0], Timed::Overran), "{:?}", out[0]);
        assert!(matches!(out[1], Timed::Busy), "{:?}", out[1]);
        assert!(matches!(out[2], Timed::Busy), "{:?}", out[2]);
        // While the runaway runs, nothing new starts.
        let more = tb.run_all(vec![1u64], 1, Arc::new(|ms: &u64| *ms)).await;
        assert!(matches!(more[0], Timed::Busy), "{:?}", more[0]);
    }

    #[tokio::test]
    async fn a_panic_is_reported_not_passed_on() {
        let tb = Timebox::new(Duration::from_secs(5), 2);
        let out = tb
            .run_all(
                vec![0u32, 1],
                1,
                Arc::new(|i: &u32| {
                    assert!(*i == 0, "item {i} is bad");
                    *i
                }),
            )
            .await;
        assert!(matches!(out[0], Timed::Done(0)));
        assert!(
            matches!(&out[1], Timed::Panicked(p) if p.contains("item 1 is bad")),
            "{:?}",
            out[1]
        );
    }
}
