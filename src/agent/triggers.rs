//! The one place where sync triggers are coalesced. The watchers (inotify, the kernel's
//! revision, SIGHUP) only queue a [`Trigger`]; what turns a burst of them into one sync, when
//! the periodic resync fires and when a failed state save is retried is decided here.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::Trigger;
use crate::defaults;

/// The reconcile loop's source of work: the watchers' channel, the resync tick and the retry
/// after a failed state save, coalesced into one trigger per sync.
pub struct Triggers {
    rx: mpsc::Receiver<Trigger>,
    resync: Interval,
    resync_interval: Duration,
    debounce: Duration,
    /// A sync whose ownership record could not be written is retried well before the resync.
    retry: Option<Instant>,
}

impl Triggers {
    /// Must be called inside the runtime (the resync tick is a timer). The first tick is
    /// immediate: the first [`Triggers::next`] is the start-up sync.
    pub fn new(rx: mpsc::Receiver<Trigger>, resync_interval: Duration, debounce: Duration) -> Triggers {
        let mut resync = tokio::time::interval(resync_interval);
        // A sync longer than the interval is not followed by a catch-up burst of resyncs.
        resync.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Triggers { rx, resync, resync_interval, debounce, retry: None }
    }

    /// Arms the retry: the next trigger comes at the latest after [`defaults::STATE_RETRY`] (or
    /// the resync interval when that is shorter). Any trigger disarms it, since it means a sync.
    pub fn retry_soon(&mut self) {
        self.retry = Some(Instant::now() + defaults::STATE_RETRY.min(self.resync_interval));
    }

    /// Waits for the next sync's trigger; `None` once `shutdown` is cancelled. A file or kernel
    /// event waits out the debounce window so that a burst (a ConfigMap swap is several events, a
    /// batch load bumps the revision once per profile) is one rescan; then everything queued is
    /// dropped, because the sync that follows rescans everything anyway. SIGHUP asks for a sync
    /// now and is not delayed.
    pub async fn next(&mut self, shutdown: &CancellationToken) -> Option<Trigger> {
        let retry = self.retry;
        let trigger = tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = self.resync.tick() => Trigger::Resync,
            () = tokio::time::sleep_until(retry.unwrap_or_else(Instant::now)), if retry.is_some() => Trigger::Resync,
            // With every sender gone `recv()` is `None` at once: the pattern does not match, so the
            // branch is disabled for this wait instead of spinning, and the resync tick still runs.
            Some(t) = self.rx.recv() => t,
        };
        self.retry = None;
        if matches!(trigger, Trigger::Files | Trigger::Kernel) {
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                () = tokio::time::sleep(self.debounce) => {}
            }
        }
        while self.rx.try_recv().is_ok() {}
        Some(trigger)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBOUNCE: Duration = Duration::from_millis(50);
    const RESYNC: Duration = Duration::from_secs(60);

    /// A coalescer past its start-up resync, and the sending side of its channel.
    async fn started(resync: Duration) -> (Triggers, mpsc::Sender<Trigger>, CancellationToken) {
        started_with(resync, DEBOUNCE).await
    }

    async fn started_with(resync: Duration, debounce: Duration) -> (Triggers, mpsc::Sender<Trigger>, CancellationToken) {
        let (tx, rx) = mpsc::channel(64);
        let mut triggers = Triggers::new(rx, resync, debounce);
        let shutdown = CancellationToken::new();
        let t0 = Instant::now();
        assert_eq!(triggers.next(&shutdown).await, Some(Trigger::Resync));
        assert_eq!(t0.elapsed(), Duration::ZERO, "the start-up sync is not delayed");
        (triggers, tx, shutdown)
    }

    /// Sends `trigger` `count` times, `every` apart, the first one at once.
    fn send_burst(tx: &mpsc::Sender<Trigger>, trigger: Trigger, count: usize, every: Duration) {
        let tx = tx.clone();
        tokio::spawn(async move {
            for i in 0..count {
                if i > 0 {
                    tokio::time::sleep(every).await;
                }
                tx.send(trigger).await.unwrap();
            }
        });
    }

    /// The next trigger and how long it took.
    async fn timed(triggers: &mut Triggers, shutdown: &CancellationToken) -> (Option<Trigger>, Duration) {
        let t0 = Instant::now();
        let trigger = triggers.next(shutdown).await;
        (trigger, t0.elapsed())
    }

    async fn burst_is_one_trigger(kind: Trigger) {
        let (mut triggers, tx, shutdown) = started(RESYNC).await;
        // Ten events 4 ms apart: the last is at 36 ms, inside the 50 ms window.
        send_burst(&tx, kind, 10, Duration::from_millis(4));
        assert_eq!(timed(&mut triggers, &shutdown).await, (Some(kind), DEBOUNCE));
        // Nothing of the burst is left over: the next trigger is the resync.
        assert_eq!(timed(&mut triggers, &shutdown).await, (Some(Trigger::Resync), RESYNC - DEBOUNCE));
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_file_events_within_the_window_is_one_trigger() {
        burst_is_one_trigger(Trigger::Files).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_kernel_events_within_the_window_is_one_trigger() {
        burst_is_one_trigger(Trigger::Kernel).await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_event_after_the_window_is_a_second_trigger() {
        let (mut triggers, tx, shutdown) = started(RESYNC).await;
        tx.send(Trigger::Files).await.unwrap();
        assert_eq!(timed(&mut triggers, &shutdown).await, (Some(Trigger::Files), DEBOUNCE));
        // One millisecond after the window closed (it is measured from the first event).
        let late = Duration::from_millis(1);
        let tx2 = tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(late).await;
            tx2.send(Trigger::Kernel).await.unwrap();
        });
        assert_eq!(timed(&mut triggers, &shutdown).await, (Some(Trigger::Kernel), late + DEBOUNCE));
    }

    #[tokio::test(start_paused = true)]
    async fn hangup_is_not_delayed_and_takes_what_is_queued_with_it() {
        let (mut triggers, tx, shutdown) = started(RESYNC).await;
        tx.send(Trigger::Hangup).await.unwrap();
        tx.send(Trigger::Files).await.unwrap();
        assert_eq!(timed(&mut triggers, &shutdown).await, (Some(Trigger::Hangup), Duration::ZERO));
        // The queued file event was covered by the hangup's sync.
        assert_eq!(timed(&mut triggers, &shutdown).await, (Some(Trigger::Resync), RESYNC));
    }

    #[tokio::test(start_paused = true)]
    async fn resync_fires_every_interval_without_events() {
        let (mut triggers, _tx, shutdown) = started(RESYNC).await;
        assert_eq!(timed(&mut triggers, &shutdown).await, (Some(Trigger::Resync), RESYNC));
        assert_eq!(timed(&mut triggers, &shutdown).await, (Some(Trigger::Resync), RESYNC));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_sync_delays_the_next_resync_instead_of_bursting() {
        let (mut triggers, _tx, shutdown) = started(Duration::from_secs(1)).await;
        // A sync that took three intervals: one resync at once, then the period again.
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(timed(&mut triggers, &shutdown).await, (Some(Trigger::Resync), Duration::ZERO));
        assert_eq!(timed(&mut triggers, &shutdown).await, (Some(Trigger::Resync), Duration::from_secs(1)));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_fires_after_state_retry_then_is_disarmed() {
        let (mut triggers, _tx, shutdown) = started(RESYNC).await;
        triggers.retry_soon();
        assert_eq!(timed(&mut triggers, &shutdown).await, (Some(Trigger::Resync), defaults::STATE_RETRY));
        // Not re-armed by itself: the next one is the periodic resync.
        assert_eq!(timed(&mut triggers, &shutdown).await, (Some(Trigger::Resync), RESYNC - defaults::STATE_RETRY));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_is_never_later_than_a_short_resync_interval() {
        let short = defaults::STATE_RETRY / 2;
        let (mut triggers, _tx, shutdown) = started(short).await;
        triggers.retry_soon();
        assert_eq!(triggers.retry, Some(Instant::now() + short));
        assert_eq!(timed(&mut triggers, &shutdown).await, (Some(Trigger::Resync), short));
    }

    #[tokio::test(start_paused = true)]
    async fn any_trigger_disarms_the_retry() {
        let (mut triggers, tx, shutdown) = started(RESYNC).await;
        triggers.retry_soon();
        tx.send(Trigger::Hangup).await.unwrap();
        assert_eq!(timed(&mut triggers, &shutdown).await, (Some(Trigger::Hangup), Duration::ZERO));
        assert_eq!(timed(&mut triggers, &shutdown).await, (Some(Trigger::Resync), RESYNC));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_during_the_debounce_returns_none_at_once() {
        let (mut triggers, tx, shutdown) = started_with(RESYNC, Duration::from_secs(30)).await;
        tx.send(Trigger::Files).await.unwrap();
        let cancel = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            cancel.cancel();
        });
        assert_eq!(timed(&mut triggers, &shutdown).await, (None, Duration::from_millis(10)));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_while_idle_returns_none() {
        let (mut triggers, _tx, shutdown) = started(RESYNC).await;
        shutdown.cancel();
        assert_eq!(timed(&mut triggers, &shutdown).await, (None, Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_channel_does_not_spin_and_the_resync_still_runs() {
        let (mut triggers, tx, shutdown) = started(RESYNC).await;
        drop(tx);
        // `recv()` is ready with `None` at every poll; were that taken as work, this would return
        // at once (or never, spinning without letting the paused clock advance).
        assert_eq!(timed(&mut triggers, &shutdown).await, (Some(Trigger::Resync), RESYNC));
        assert_eq!(timed(&mut triggers, &shutdown).await, (Some(Trigger::Resync), RESYNC));
    }
}
