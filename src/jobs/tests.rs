//! The runner driving small real jobs on a real tokio runtime. Timing is
//! checked by lower bounds (a sleep lasts at least what was asked) and by
//! counting batches in a window, never by how fast something went.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};

use super::*;

const HOUR: Duration = Duration::from_secs(3600);

/// A job that records when each batch starts, takes `work` per batch, and
/// fails its first `failures` batches.
struct Probe {
    name: &'static str,
    interval: Duration,
    tranquility: u32,
    work: Duration,
    failures: u64,
    more: bool,
    starts: Arc<Mutex<Vec<Instant>>>,
    finished: Arc<AtomicU64>,
    wake: Option<Arc<Notify>>,
}

impl Probe {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            interval: HOUR,
            tranquility: 0,
            work: Duration::ZERO,
            failures: 0,
            more: false,
            starts: Arc::default(),
            finished: Arc::default(),
            wake: None,
        }
    }
}

impl Job for Probe {
    fn name(&self) -> &'static str {
        self.name
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn first_delay(&self) -> Duration {
        Duration::ZERO
    }

    fn tranquility(&self) -> u32 {
        self.tranquility
    }

    fn wake(&self) -> Option<Arc<Notify>> {
        self.wake.clone()
    }

    async fn step(&mut self) -> Result<Batch, JobError> {
        let n = {
            let mut starts = self.starts.lock();
            starts.push(Instant::now());
            starts.len() as u64
        };
        tokio::time::sleep(self.work).await;
        self.finished.fetch_add(1, SeqCst);
        if n <= self.failures {
            return Err(JobError::Test("boom"));
        }
        Ok(Batch {
            items: 2,
            more: self.more,
        })
    }
}

fn quick() -> RunnerConfig {
    RunnerConfig {
        backoff_first: Duration::from_millis(20),
        backoff_cap: Duration::from_millis(80),
        shutdown_wait: Duration::from_secs(10),
        long_run: HOUR,
    }
}

fn gaps(starts: &[Instant]) -> Vec<Duration> {
    starts.windows(2).map(|w| w[1] - w[0]).collect()
}

#[test]
fn backoff_doubles_up_to_the_cap() {
    let c = quick();
    let ms = |n| c.backoff(n).as_millis();
    assert_eq!([ms(1), ms(2), ms(3), ms(4), ms(50)], [20, 40, 80, 80, 80]);
    assert_eq!(RunnerConfig::default().backoff(u32::MAX), HOUR);
}

#[tokio::test]
async fn a_failed_run_is_retried_after_a_growing_backoff_then_the_interval() {
    let mut probe = Probe::new("flaky");
    probe.failures = 4;
    let starts = probe.starts.clone();
    let mut runner = Runner::new(quick());
    let status = runner.status();
    runner.spawn(probe);
    // 4 failures (retries after 20, 40, 80, 80 ms), then a success, after
    // which the next run is an hour away.
    for _ in 0..200 {
        if status
            .get("flaky")
            .is_some_and(|s| s.last_success.is_some())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let starts = starts.lock().clone();
    assert_eq!(starts.len(), 5, "four failures, one success, then quiet");
    let gaps = gaps(&starts);
    for (gap, least) in gaps.iter().zip([20, 40, 80, 80]) {
        assert!(*gap >= Duration::from_millis(least), "{gaps:?}");
    }
    let s = status.get("flaky").unwrap();
    assert_eq!((s.runs, s.errors_total, s.items_total), (5, 4, 2));
    assert_eq!(s.last_error.as_deref(), Some("test failure: boom"));
    assert!(!s.running);
    assert!(runner.shutdown().await.is_empty());
}

#[tokio::test]
async fn a_woken_job_runs_before_its_interval_ends() {
    let mut probe = Probe::new("woken");
    let wake = Arc::new(Notify::new());
    probe.wake = Some(wake.clone());
    let starts = probe.starts.clone();
    let mut runner = Runner::new(quick());
    let status = runner.status();
    runner.spawn(probe);
    let runs = |n: u64| {
        let status = status.clone();
        async move {
            for _ in 0..500 {
                if status.get("woken").is_some_and(|s| s.runs >= n) {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            false
        }
    };
    assert!(runs(1).await, "the first run");
    // Its interval is an hour: only the wake brings the next runs.
    wake.notify_one();
    assert!(runs(2).await, "woken once");
    wake.notify_one();
    assert!(runs(3).await, "woken again");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(starts.lock().len(), 3, "no run without a wake");
    assert!(runner.shutdown().await.is_empty());
}

#[tokio::test]
async fn any_job_runs_now_when_asked_by_name() {
    let mut probe = Probe::new("asked");
    probe.failures = 1;
    let starts = probe.starts.clone();
    let mut runner = Runner::new(RunnerConfig {
        backoff_first: HOUR,
        backoff_cap: HOUR,
        ..quick()
    });
    let status = runner.status();
    assert!(!status.run_now("asked"), "not started yet");
    runner.spawn(probe);
    let runs = |n: u64| {
        let status = status.clone();
        async move {
            for _ in 0..500 {
                if status.get("asked").is_some_and(|s| s.runs >= n) {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            false
        }
    };
    assert!(runs(1).await, "the first run (it fails)");
    // It backs off for an hour now; asking by name ends that wait, and
    // then the hour-long interval.
    assert!(status.run_now("asked"));
    assert!(runs(2).await, "run on request after a failure");
    assert!(status.run_now("asked"));
    assert!(runs(3).await, "run on request within its interval");
    assert!(!status.run_now("nothing"), "an unknown name");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(starts.lock().len(), 3);
    assert!(runner.shutdown().await.is_empty());
}

/// Batches started during `window` by a job that always has more work.
async fn batches_in(window: Duration, tranquility: u32) -> (usize, Vec<Duration>) {
    let mut probe = Probe::new("busy");
    probe.more = true;
    probe.work = Duration::from_millis(5);
    probe.tranquility = tranquility;
    let starts = probe.starts.clone();
    let mut runner = Runner::new(quick());
    runner.spawn(probe);
    tokio::time::sleep(window).await;
    assert!(runner.shutdown().await.is_empty());
    let starts = starts.lock().clone();
    (starts.len(), gaps(&starts))
}

#[tokio::test]
async fn the_tranquilizer_spaces_batches_by_their_duration() {
    let window = Duration::from_millis(300);
    let (eager, _) = batches_in(window, 0).await;
    let (tranquil, gaps) = batches_in(window, 9).await;
    // Each batch takes ≥ 5 ms, then rests ≥ 9 × that: ≥ 50 ms a cycle.
    assert!(tranquil <= 7, "{tranquil} batches in {window:?}");
    assert!(eager > tranquil, "{eager} without, {tranquil} with");
    for gap in gaps {
        assert!(gap >= Duration::from_millis(50), "{gap:?}");
    }
}

#[tokio::test]
async fn shutdown_waits_for_the_batch_in_progress_then_stops() {
    let mut probe = Probe::new("steady");
    probe.more = true;
    probe.work = Duration::from_millis(150);
    let (starts, finished) = (probe.starts.clone(), probe.finished.clone());
    let mut runner = Runner::new(quick());
    let status = runner.status();
    runner.spawn(probe);
    for _ in 0..100 {
        if !starts.lock().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(status.get("steady").unwrap().running);
    assert!(runner.shutdown().await.is_empty(), "nothing aborted");
    let begun = starts.lock().len() as u64;
    assert_eq!(
        finished.load(SeqCst),
        begun,
        "the batch in progress finished"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(starts.lock().len() as u64, begun, "no batch after shutdown");
    let s = status.get("steady").unwrap();
    assert!(!s.running);
    assert_eq!(s.items_total, 2 * begun);
}

/// Never finishes its batch; tells when its future is dropped.
struct Stuck(Arc<AtomicBool>, Arc<AtomicBool>);

struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, SeqCst);
    }
}

impl Job for Stuck {
    fn name(&self) -> &'static str {
        "stuck"
    }

    fn interval(&self) -> Duration {
        HOUR
    }

    fn first_delay(&self) -> Duration {
        Duration::ZERO
    }

    async fn step(&mut self) -> Result<Batch, JobError> {
        let _guard = SetOnDrop(self.1.clone());
        self.0.store(true, SeqCst);
        std::future::pending::<()>().await;
        Ok(Batch::done(0))
    }
}

#[tokio::test]
async fn a_job_that_ignores_shutdown_is_aborted_after_the_bound() {
    let (started, dropped) = (Arc::new(AtomicBool::new(false)), Arc::default());
    let mut runner = Runner::new(RunnerConfig {
        shutdown_wait: Duration::from_millis(100),
        ..quick()
    });
    runner.spawn(Stuck(started.clone(), Arc::clone(&dropped)));
    runner.spawn(Probe::new("fine"));
    for _ in 0..100 {
        if started.load(SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let waited = Instant::now();
    assert_eq!(runner.shutdown().await, vec!["stuck"]);
    assert!(waited.elapsed() >= Duration::from_millis(100));
    for _ in 0..100 {
        if dropped.load(SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(dropped.load(SeqCst), "the stuck batch was cancelled");
}
