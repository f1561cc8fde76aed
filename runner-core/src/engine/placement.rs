//! Where a pipeline runs: inline on the async worker when it is cheap, on the blocking
//! pool otherwise, decided from sampled CPU time.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// The clock of the hot path: quanta's, which reads the CPU's time-stamp counter where it
/// is invariant (falling back to the system's clock elsewhere). A request reads the clock
/// nine times (its arrival, the access log's, each hook's, its end); through the vDSO each reading
/// cost about 21 ns here, the counter about 12 ns, and its instants are one integer
/// (`bench/RESULTS.md`).
pub(crate) use quanta::Instant;

/// Times consecutive steps: each `lap` records the time since the previous one, and one
/// reading of the clock serves as the end of a step and the start of the next.
pub(crate) struct Lap {
    first: Instant,
    last: Instant,
}

impl Lap {
    pub(crate) fn start() -> Lap {
        let now = Instant::now();
        Lap { first: now, last: now }
    }

    pub(crate) fn lap(&mut self, histogram: &prometheus_client::metrics::histogram::Histogram) {
        let now = Instant::now();
        histogram.observe(now.duration_since(self.last).as_secs_f64());
        self.last = now;
    }

    /// From the start to the last lap (to now when there was none).
    fn total(&self) -> Duration {
        match self.last == self.first {
            true => self.first.elapsed(),
            false => self.last.duration_since(self.first),
        }
    }
}

/// Wall and CPU time of work done on one thread.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cost {
    wall: Duration,
    /// The thread's CPU time when it was sampled (the wall time where the platform does
    /// not tell).
    cpu: Option<Duration>,
}

impl std::ops::Add for Cost {
    type Output = Cost;
    fn add(self, other: Cost) -> Cost {
        Cost { wall: self.wall + other.wall, cpu: self.cpu.zip(other.cpu).map(|(a, b)| a + b) }
    }
}

/// Runs `work` here and measures it, its CPU time too when `cpu` (a system call).
pub(crate) fn measured<T>(cpu: bool, work: impl FnOnce() -> T) -> (T, Cost) {
    measured_on(cpu, |_| work())
}

/// [`measured`], for `work` that times its steps on the clock it is given: the clock's
/// readings give the whole its wall time too (one reading fewer per step).
fn measured_on<T>(cpu: bool, work: impl FnOnce(&mut Lap) -> T) -> (T, Cost) {
    let cpu_start = if cpu { thread_cpu() } else { None };
    let mut clock = Lap::start();
    let out = work(&mut clock);
    let wall = clock.total();
    let cpu = cpu.then(|| match (cpu_start, thread_cpu()) {
        (Some(start), Some(end)) => end.saturating_sub(start).min(wall),
        _ => wall,
    });
    (out, Cost { wall, cpu })
}

/// CPU time of the calling thread.
#[cfg(unix)]
fn thread_cpu() -> Option<Duration> {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Some(Duration::new(u64::try_from(t.tv_sec).ok()?, u32::try_from(t.tv_nsec).ok()?))
}

#[cfg(not(unix))]
fn thread_cpu() -> Option<Duration> {
    None
}

/// Where a model's pipeline runs. Pipelines start on the blocking pool; one whose
/// average CPU time and average time off the CPU (waiting: sleeps, I/O, locks,
/// preemption) both stay under the inline threshold moves onto the async worker, where a
/// thread hop would cost more than the work. CPU time, not wall time, is what it costs: on
/// a busy machine a pool thread's wall time grows with everything else running. CPU time
/// is sampled (one call in [`CPU_SAMPLE`]). An inline pipeline goes back to the pool when
/// its averages pass twice the threshold (hysteresis: averages near the threshold do not
/// flap), and for good when an inline call takes over [`BLOCKING`], or when calls over
/// [`SLOW`] become more than [`SLOW_SHARE_LIMIT`] of recent inline calls. A single slow
/// call is not enough: the thread can be preempted in the middle of a fast pipeline.
pub(crate) struct Placement {
    threshold_ns: u64,
    /// Exponentially weighted moving average of the pipeline's CPU time, in ns.
    pub(crate) cpu_ns: AtomicU64,
    /// The same for its time off the CPU (wall minus CPU), in ns.
    pub(crate) waiting_ns: AtomicU64,
    /// Share of recent inline calls over [`SLOW`], in millionths (moving average).
    pub(crate) slow_share: AtomicU64,
    /// Calls counted in the averages.
    pub(crate) measured: AtomicU64,
    /// Calls seen, for sampling.
    calls: AtomicU64,
    inline: AtomicBool,
    pub(crate) never_inline: AtomicBool,
}

/// Calls measured on the pool before a pipeline may move inline.
const WARM_UP_CALLS: u64 = 32;
/// After the warm-up, one call in this many has its CPU time measured.
const CPU_SAMPLE: u64 = 32;
/// A call this slow (wall time) does not count towards the averages.
const SLOW: Duration = Duration::from_millis(1);
/// One inline call this slow blocked the async worker: back to the pool for good.
const BLOCKING: Duration = Duration::from_millis(50);
/// Share of slow inline calls (millionths) past which the pipeline goes back to the pool.
const SLOW_SHARE_LIMIT: u64 = 50_000;

/// One step of an exponentially weighted moving average (weight 1/8), 0 meaning empty.
fn ewma(average: &AtomicU64, sample: u64) -> u64 {
    let old = average.load(Ordering::Relaxed);
    let new = if old == 0 { sample.max(1) } else { (old - old / 8 + sample / 8).max(1) };
    average.store(new, Ordering::Relaxed);
    new
}

impl Placement {
    pub(crate) fn new(threshold: Duration) -> Placement {
        Placement {
            threshold_ns: threshold.as_nanos() as u64,
            cpu_ns: AtomicU64::new(0),
            waiting_ns: AtomicU64::new(0),
            slow_share: AtomicU64::new(0),
            measured: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            inline: AtomicBool::new(false),
            never_inline: AtomicBool::new(threshold.is_zero()),
        }
    }

    /// Starts from what `previous` measured: a new version of a model swapped in for
    /// another costs about the same, so it starts where the old one stood (its averages
    /// and where it runs) instead of warming up on the pool again. The guards apply as
    /// ever: a slower new version goes back to the pool on its first slow calls.
    pub(crate) fn start_from(&self, previous: &Placement) {
        for (mine, theirs) in [
            (&self.cpu_ns, &previous.cpu_ns),
            (&self.waiting_ns, &previous.waiting_ns),
            (&self.slow_share, &previous.slow_share),
            (&self.measured, &previous.measured),
        ] {
            mine.store(theirs.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        self.inline.store(previous.inline(), Ordering::Relaxed);
        if previous.never_inline.load(Ordering::Relaxed) {
            self.pin_to_pool();
        }
    }

    pub(crate) fn inline(&self) -> bool {
        self.inline.load(Ordering::Relaxed)
    }

    /// Whether to measure the CPU time of the next call.
    pub(crate) fn sample_cpu(&self) -> bool {
        if self.never_inline.load(Ordering::Relaxed) {
            return false;
        }
        if self.measured.load(Ordering::Relaxed) < WARM_UP_CALLS {
            return true;
        }
        // A load and a store, not an atomic increment (a locked instruction on every
        // request): calls that race may count once, which only moves the next sample.
        let calls = self.calls.load(Ordering::Relaxed);
        self.calls.store(calls.wrapping_add(1), Ordering::Relaxed);
        calls.is_multiple_of(CPU_SAMPLE)
    }

    fn pin_to_pool(&self) {
        self.never_inline.store(true, Ordering::Relaxed);
        self.inline.store(false, Ordering::Relaxed);
    }

    /// Runs `work` here, measures it and records it; `work` times its steps on the clock
    /// it is given, whose readings give the whole its wall time too.
    pub(crate) fn timed<T>(&self, ran_inline: bool, work: impl FnOnce(&mut Lap) -> T) -> T {
        let (out, cost) = measured_on(self.sample_cpu(), work);
        self.record(cost, ran_inline);
        out
    }

    /// Records one call. Races between threads only blur the averages.
    pub(crate) fn record(&self, cost: Cost, ran_inline: bool) {
        if self.never_inline.load(Ordering::Relaxed) {
            return;
        }
        let slow = cost.wall > SLOW;
        if ran_inline {
            if cost.wall > BLOCKING {
                return self.pin_to_pool();
            }
            let old = self.slow_share.load(Ordering::Relaxed);
            let share = old - old / 64 + if slow { 1_000_000 / 64 } else { 0 };
            self.slow_share.store(share, Ordering::Relaxed);
            if share > SLOW_SHARE_LIMIT {
                return self.pin_to_pool();
            }
        }
        let Some(cpu) = cost.cpu.filter(|_| !slow) else {
            return;
        };
        let waiting = ewma(&self.waiting_ns, cost.wall.saturating_sub(cpu).as_nanos() as u64);
        let cpu = ewma(&self.cpu_ns, cpu.as_nanos() as u64);
        let measured = self.measured.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        let limit = if self.inline() { 2 * self.threshold_ns } else { self.threshold_ns };
        self.inline.store(measured >= WARM_UP_CALLS && cpu < limit && waiting < limit, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A call that ran on the CPU all along.
    fn busy(wall: Duration) -> Cost {
        Cost { wall, cpu: Some(wall) }
    }

    fn warm(placement: &Placement, each: Cost) {
        for _ in 0..WARM_UP_CALLS {
            placement.record(each, false);
        }
    }

    #[test]
    fn a_swapped_in_version_starts_where_the_old_one_stood() {
        let old = Placement::new(Duration::from_micros(50));
        warm(&old, busy(Duration::from_micros(3)));
        let new = Placement::new(Duration::from_micros(50));
        assert!(!new.inline(), "a fresh placement starts on the pool");
        new.start_from(&old);
        assert!(new.inline(), "the new version inherits the old one's place");
        new.record(busy(Duration::from_millis(60)), true);
        assert!(!new.inline(), "and its guards: one blocking call sends it to the pool");
        let pinned = Placement::new(Duration::from_micros(50));
        pinned.start_from(&new);
        assert!(!pinned.inline() && !pinned.sample_cpu(), "a version pinned to the pool passes that on");
    }

    #[test]
    fn fast_pipelines_move_inline_and_slow_ones_stay_on_the_pool() {
        let fast = Placement::new(Duration::from_micros(50));
        warm(&fast, busy(Duration::from_micros(3)));
        assert!(fast.inline());
        let slow = Placement::new(Duration::from_micros(50));
        warm(&slow, busy(Duration::from_micros(300)));
        assert!(!slow.inline());
        let very_slow = Placement::new(Duration::from_micros(50));
        warm(&very_slow, busy(Duration::from_millis(20)));
        assert!(!very_slow.inline(), "samples over 1 ms never count towards moving inline");
        let disabled = Placement::new(Duration::ZERO);
        warm(&disabled, busy(Duration::from_micros(1)));
        assert!(!disabled.inline());
    }

    #[test]
    fn cpu_time_decides_and_waiting_keeps_a_pipeline_on_the_pool() {
        // Preempted on a busy machine: 170 µs of wall time, 90 µs of work.
        let preempted = Placement::new(Duration::from_micros(100));
        warm(&preempted, Cost { wall: Duration::from_micros(170), cpu: Some(Duration::from_micros(90)) });
        assert!(preempted.inline(), "CPU time under the threshold, time off the CPU too");
        // Cheap on the CPU but sleeping or waiting on I/O: it would block the async worker.
        let waiting = Placement::new(Duration::from_micros(100));
        warm(&waiting, Cost { wall: Duration::from_micros(400), cpu: Some(Duration::from_micros(5)) });
        assert!(!waiting.inline());
    }

    #[test]
    fn an_inline_pipeline_near_the_threshold_does_not_flap() {
        let p = Placement::new(Duration::from_micros(100));
        warm(&p, busy(Duration::from_micros(90)));
        assert!(p.inline());
        warm(&p, busy(Duration::from_micros(150)));
        assert!(p.inline(), "under twice the threshold it stays inline");
        warm(&p, busy(Duration::from_micros(260)));
        assert!(!p.inline(), "over twice the threshold it goes back to the pool");
        warm(&p, busy(Duration::from_micros(150)));
        assert!(!p.inline(), "and comes back only under the threshold");
        warm(&p, busy(Duration::from_micros(60)));
        assert!(p.inline());
    }

    #[test]
    fn cpu_time_is_sampled_after_the_warm_up() {
        let p = Placement::new(Duration::from_micros(100));
        let warm_up = (0..WARM_UP_CALLS).filter(|_| p.sample_cpu()).count() as u64;
        assert_eq!(warm_up, WARM_UP_CALLS, "not counted yet: every call is measured");
        warm(&p, busy(Duration::from_micros(10)));
        let sampled = (0..8 * CPU_SAMPLE).filter(|_| p.sample_cpu()).count();
        assert_eq!(sampled, 8);
        // Unsampled calls still count for the wall-time guards.
        p.record(Cost { wall: Duration::from_millis(80), cpu: None }, true);
        assert!(!p.inline());
    }

    #[test]
    fn measured_counts_cpu_time_not_sleep() {
        let ((), sleeping) = measured(true, || std::thread::sleep(Duration::from_millis(20)));
        assert!(sleeping.wall >= Duration::from_millis(20));
        assert!(sleeping.cpu.unwrap() < Duration::from_millis(5), "{sleeping:?}");
        let ((), spinning) = measured(true, || {
            let start = Instant::now();
            while start.elapsed() < Duration::from_millis(20) {
                std::hint::spin_loop();
            }
        });
        let cpu = spinning.cpu.unwrap();
        assert!(cpu > Duration::ZERO && cpu <= spinning.wall, "{spinning:?}");
        assert_eq!(measured(false, || ()).1.cpu, None);
    }

    #[test]
    fn a_rare_preempted_call_does_not_pin_but_a_slow_habit_does() {
        let p = Placement::new(Duration::from_micros(50));
        let (fast, hiccup) = (busy(Duration::from_micros(3)), busy(Duration::from_millis(3)));
        warm(&p, fast);
        for i in 0..10_000 {
            p.record(if i % 2_000 == 0 { hiccup } else { fast }, true);
        }
        assert!(p.inline(), "one slow call in 2000 is preemption, not a slow pipeline");
        for i in 0..200 {
            p.record(if i % 8 == 0 { hiccup } else { fast }, true);
        }
        assert!(!p.inline(), "one slow call in 8 keeps the pipeline off the async worker");
        warm(&p, busy(Duration::from_micros(1)));
        assert!(!p.inline(), "for good");
    }

    #[test]
    fn one_blocking_call_pins_to_the_pool() {
        let p = Placement::new(Duration::from_micros(50));
        warm(&p, busy(Duration::from_micros(3)));
        p.record(busy(Duration::from_millis(80)), true);
        assert!(!p.inline());
    }
}
