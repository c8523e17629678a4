//! Busy polling: an HTTP thread that has just served a request keeps polling its sockets
//! for a short window before it blocks in the kernel, so that a request arriving within the
//! window is picked up without a sleep and a wake-up.
//!
//! Why: on a lightly loaded server every request arrives at a sleeping thread. The wake-up
//! (the scheduler switching the thread back in, and whatever the sleep cooled: caches, TLB;
//! the test VM has no hardware counters to tell) made a lone request cost about 1.7× a
//! back-to-back one on the test VM (41–50 µs against 24–29 µs for a hello;
//! `docs/benchmarks.md`, round 5), and that extra CPU is queueing delay in the tail.
//! Polling for a window after each request keeps the thread hot while requests keep coming,
//! at the price of the CPU spent polling. A thread polls only while its requests come on
//! average within a window of each other (a moving average of the gaps), so sparse traffic
//! costs no polling at all, and it stops when a whole window passes with no request, so an
//! idle server uses no CPU. Busy enough to poll, a thread uses its whole CPU: the same
//! trade as the kernel's `SO_BUSY_POLL` or Seastar's poll mode, bounded.
//!
//! How: each HTTP thread runs [`poll_while_busy`] beside its accept loop. Every request
//! calls [`activity`], which counts it, updates the average gap and wakes the poller if it
//! is parked. The poller then yields to the runtime in a loop; a yielded task makes tokio's
//! current-thread scheduler poll the I/O driver without blocking (`epoll_wait` with a zero
//! timeout) instead of parking, so readiness is seen at once. When a window passes with no
//! new request, the poller parks until the next one.

use std::cell::Cell;
use std::future::poll_fn;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

thread_local! {
    /// Requests this thread has started.
    static STARTED: Cell<u64> = const { Cell::new(0) };
    /// When the last one started, and the moving average of the gaps between starts.
    static GAPS: Cell<Option<(Instant, Duration)>> = const { Cell::new(None) };
    /// The parked poller's waker, if it is parked.
    static PARKED: Cell<Option<Waker>> = const { Cell::new(None) };
}

/// Notes that this thread has started a request: the poller, if parked, wakes to decide
/// whether to poll.
#[inline]
pub fn activity() {
    STARTED.with(|s| s.set(s.get().wrapping_add(1)));
    let now = Instant::now();
    GAPS.with(|g| {
        let mean = match g.get() {
            // Each gap weighs a quarter: a few sparse requests are enough to stop polling.
            Some((last, mean)) => (mean * 3 + now.saturating_duration_since(last)) / 4,
            None => Duration::ZERO,
        };
        g.set(Some((now, mean)));
    });
    if let Some(waker) = PARKED.with(Cell::take) {
        waker.wake();
    }
}

/// The moving average of the gaps between this thread's requests.
fn mean_gap() -> Duration {
    GAPS.with(|g| g.get().map_or(Duration::MAX, |(_, mean)| mean))
}

/// Runs forever on an HTTP thread's runtime: parked until a request starts; then, if
/// requests have been coming on average within `window` of each other, polling until
/// `window` passes with no new request. A zero `window` parks for good.
pub async fn poll_while_busy(window: Duration) {
    if window.is_zero() {
        return std::future::pending().await;
    }
    let mut seen = STARTED.with(Cell::get);
    loop {
        // Parked: wait for a request.
        poll_fn(|cx| {
            let now = STARTED.with(Cell::get);
            if now != seen {
                seen = now;
                Poll::Ready(())
            } else {
                PARKED.with(|p| p.set(Some(cx.waker().clone())));
                Poll::Pending
            }
        })
        .await;
        // Sparse requests: the next one would most likely find the window over, so
        // polling would only burn CPU.
        if mean_gap() >= window {
            continue;
        }
        // Polling: every yield is one non-blocking look at the sockets.
        let mut quiet_since = Instant::now();
        loop {
            tokio::task::yield_now().await;
            let now = STARTED.with(Cell::get);
            if now != seen {
                seen = now;
                quiet_since = Instant::now();
            } else if quiet_since.elapsed() >= window {
                break;
            }
        }
    }
}
