//! Reconnect policies: when to try again, and when to give up.
//!
//! A policy is Proton's custom reconnect object in Rust: [`ReconnectPolicy`]
//! with `reset()` and `next()`. [`Reconnect`] is what
//! [`ConnectOptions::reconnect`](crate::ConnectOptions::reconnect) takes: the
//! default exponential schedule, [`Reconnect::disabled`], any policy, or any
//! iterator of delays.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// When to try to connect again. This is the shape of Proton's custom
/// reconnect object (and of the `backoff` crate's `Backoff`).
///
/// The connection calls [`reset`](Self::reset) once before each reconnect
/// process begins (after a connection that stayed up, and before the
/// first connect), then [`next`](Self::next) before each attempt after a
/// failure; `None` means give up.
pub trait ReconnectPolicy: Send + 'static {
    /// Starts a new reconnect process (the schedule begins again).
    fn reset(&mut self);
    /// The delay before the next attempt, or `None` to give up.
    fn next(&mut self) -> Option<Duration>;
}

/// Proton's schedule: the first retry at once (0 s), then 0.1 s, doubling
/// each time up to 10 s, forever. Jitter, a cap on attempts and a cap on
/// the total time are options.
#[derive(Clone, Debug)]
pub struct Exponential {
    initial: Duration,
    max: Duration,
    max_attempts: Option<u32>,
    max_elapsed: Option<Duration>,
    jitter: bool,
    attempt: u32,
    current: Duration,
    started: Option<Instant>,
    seed: u64,
}

impl Default for Exponential {
    fn default() -> Self {
        Exponential {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            max_attempts: None,
            max_elapsed: None,
            jitter: false,
            attempt: 0,
            current: Duration::ZERO,
            started: None,
            seed: 0x9E37_79B9_7F4A_7C15 ^ u64::from(std::process::id()),
        }
    }
}

impl Exponential {
    /// The delay after the second failure (default 100 ms); later delays
    /// double from it.
    #[must_use]
    pub fn initial_delay(mut self, delay: Duration) -> Self {
        self.initial = delay;
        self
    }

    /// The longest delay between attempts (default 10 s).
    #[must_use]
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max = delay;
        self
    }

    /// Gives up after `n` attempts in one reconnect process (default: never).
    #[must_use]
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = Some(n);
        self
    }

    /// Gives up once `total` has passed since the reconnect process began
    /// (default: never).
    #[must_use]
    pub fn max_elapsed(mut self, total: Duration) -> Self {
        self.max_elapsed = Some(total);
        self
    }

    /// Spreads each delay uniformly over `[delay/2, delay]`, so that many
    /// clients of one restarted broker do not come back at the same instant
    /// (default: off, Proton's exact schedule).
    #[must_use]
    pub fn jitter(mut self, on: bool) -> Self {
        self.jitter = on;
        self
    }

    fn random(&mut self) -> u64 {
        // xorshift64*: enough to spread delays; not for secrets.
        self.seed ^= self.seed >> 12;
        self.seed ^= self.seed << 25;
        self.seed ^= self.seed >> 27;
        self.seed.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

impl ReconnectPolicy for Exponential {
    fn reset(&mut self) {
        self.attempt = 0;
        self.current = Duration::ZERO;
        self.started = Some(Instant::now());
    }

    fn next(&mut self) -> Option<Duration> {
        if self.max_attempts.is_some_and(|n| self.attempt >= n) {
            return None;
        }
        let started = *self.started.get_or_insert_with(Instant::now);
        if self.max_elapsed.is_some_and(|t| started.elapsed() >= t) {
            return None;
        }
        let delay = match self.attempt {
            0 => Duration::ZERO,
            1 => self.initial.min(self.max),
            _ => (self.current * 2).min(self.max),
        };
        self.attempt += 1;
        self.current = delay;
        if self.jitter && !delay.is_zero() {
            let half = delay / 2;
            let spread = half.as_nanos() as u64;
            let extra = if spread == 0 {
                0
            } else {
                self.random() % (spread + 1)
            };
            return Some(half + Duration::from_nanos(extra));
        }
        Some(delay)
    }
}

/// A policy that never retries: Proton's `reconnect=False`.
#[derive(Clone, Copy, Debug, Default)]
struct Never;

impl ReconnectPolicy for Never {
    fn reset(&mut self) {}
    fn next(&mut self) -> Option<Duration> {
        None
    }
}

/// Any iterator of delays as a policy (for example a `backon` builder's
/// iterator): `reset()` makes a fresh iterator.
struct FromIter<F, I> {
    make: F,
    iter: I,
}

impl<F, I> ReconnectPolicy for FromIter<F, I>
where
    F: FnMut() -> I + Send + 'static,
    I: Iterator<Item = Duration> + Send + 'static,
{
    fn reset(&mut self) {
        self.iter = (self.make)();
    }
    fn next(&mut self) -> Option<Duration> {
        self.iter.next()
    }
}

/// The `backoff` crate's `Backoff` as a policy (feature `backoff`).
///
/// `backoff` is unmaintained (RUSTSEC-2025-0012) and pulls in the
/// unmaintained `instant`, so it is optional and its types never appear in
/// the rest of the API.
#[cfg(feature = "backoff")]
#[cfg_attr(docsrs, doc(cfg(feature = "backoff")))]
struct FromBackoff<B>(B);

#[cfg(feature = "backoff")]
impl<B: backoff::backoff::Backoff + Send + 'static> ReconnectPolicy for FromBackoff<B> {
    fn reset(&mut self) {
        self.0.reset();
    }
    fn next(&mut self) -> Option<Duration> {
        self.0.next_backoff()
    }
}

/// Whether and how a connection reconnects: the argument of
/// [`ConnectOptions::reconnect`](crate::ConnectOptions::reconnect).
///
/// The default is [`Reconnect::exponential`]: Proton's schedule (at once,
/// then 0.1 s doubling to 10 s, forever).
#[derive(Clone)]
pub struct Reconnect {
    make: Arc<dyn Fn() -> Box<dyn ReconnectPolicy> + Send + Sync>,
    enabled: bool,
    describe: Arc<str>,
}

impl Default for Reconnect {
    fn default() -> Self {
        Exponential::default().into()
    }
}

impl fmt::Debug for Reconnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe)
    }
}

impl From<Exponential> for Reconnect {
    fn from(e: Exponential) -> Self {
        let describe = format!("{e:?}");
        Reconnect {
            make: Arc::new(move || Box::new(e.clone())),
            enabled: true,
            describe: describe.into(),
        }
    }
}

impl Reconnect {
    /// Proton's schedule (the default): the first retry at once, then 0.1 s
    /// doubling to 10 s, forever. Adjust it with the [`Exponential`]
    /// setters: `Reconnect::exponential().max_delay(Duration::from_secs(1))
    /// .max_attempts(20)` (it converts into a `Reconnect` where one is
    /// expected).
    pub fn exponential() -> Exponential {
        Exponential::default()
    }

    /// No reconnect (Proton's `reconnect=False`): a lost connection fails
    /// every handle with its error at once, and a failed first connect
    /// fails `connect`.
    pub fn disabled() -> Self {
        Reconnect {
            make: Arc::new(|| Box::new(Never)),
            enabled: false,
            describe: "Reconnect::disabled".into(),
        }
    }

    /// A custom policy. `make` builds one per connection (a connection
    /// owns its policy's state).
    pub fn custom<P: ReconnectPolicy>(make: impl Fn() -> P + Send + Sync + 'static) -> Self {
        Reconnect {
            make: Arc::new(move || Box::new(make())),
            enabled: true,
            describe: "Reconnect::custom".into(),
        }
    }

    /// The delays of an iterator, made afresh by `make` on each reset; the
    /// end of the iterator means give up. `backon` builders plug in here:
    /// `Reconnect::delays(|| ExponentialBuilder::default().build())`.
    pub fn delays<I>(make: impl Fn() -> I + Send + Sync + 'static) -> Self
    where
        I: IntoIterator<Item = Duration>,
        I::IntoIter: Send + 'static,
    {
        let make = Arc::new(make);
        Reconnect {
            make: Arc::new(move || {
                let m = make.clone();
                Box::new(FromIter {
                    iter: m().into_iter(),
                    make: move || m().into_iter(),
                })
            }),
            enabled: true,
            describe: "Reconnect::delays".into(),
        }
    }

    /// A `backoff` crate policy (feature `backoff`; the crate is
    /// unmaintained, see the module docs): `make` builds one per
    /// connection.
    #[cfg(feature = "backoff")]
    #[cfg_attr(docsrs, doc(cfg(feature = "backoff")))]
    pub fn from_backoff<B>(make: impl Fn() -> B + Send + Sync + 'static) -> Self
    where
        B: backoff::backoff::Backoff + Send + 'static,
    {
        Reconnect {
            make: Arc::new(move || Box::new(FromBackoff(make()))),
            enabled: true,
            describe: "Reconnect::from_backoff".into(),
        }
    }

    /// Whether reconnecting is on.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// A fresh policy for one connection.
    pub(crate) fn policy(&self) -> SharedPolicy {
        SharedPolicy(Arc::new(Mutex::new((self.make)())))
    }
}

/// One connection's policy, shared by the clones of its reconnect service.
#[derive(Clone)]
pub(crate) struct SharedPolicy(Arc<Mutex<Box<dyn ReconnectPolicy>>>);

impl fmt::Debug for SharedPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedPolicy")
    }
}

impl SharedPolicy {
    pub(crate) fn reset(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).reset();
    }
    pub(crate) fn next(&self) -> Option<Duration> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    #[test]
    fn protons_schedule() {
        let mut p = Exponential::default();
        p.reset();
        let got: Vec<Duration> = (0..12).map(|_| p.next().unwrap()).collect();
        assert_eq!(
            got,
            ms(&[0, 100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000, 10_000])
        );
        // reset starts again
        p.reset();
        assert_eq!(p.next(), Some(Duration::ZERO));
        assert_eq!(p.next(), Some(Duration::from_millis(100)));
    }

    #[test]
    fn max_attempts_gives_up_and_reset_rearms() {
        let mut p = Exponential::default().max_attempts(3);
        p.reset();
        assert_eq!(
            (0..4).map(|_| p.next()).collect::<Vec<_>>(),
            vec![
                Some(Duration::ZERO),
                Some(Duration::from_millis(100)),
                Some(Duration::from_millis(200)),
                None
            ]
        );
        p.reset();
        assert_eq!(p.next(), Some(Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn max_elapsed_counts_from_reset() {
        let mut p = Exponential::default().max_elapsed(Duration::from_secs(1));
        p.reset();
        assert!(p.next().is_some());
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(p.next().is_some());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(p.next(), None);
        p.reset();
        assert_eq!(p.next(), Some(Duration::ZERO));
    }

    #[test]
    fn jitter_stays_within_half_to_full() {
        let mut p = Exponential::default().jitter(true);
        p.reset();
        assert_eq!(p.next(), Some(Duration::ZERO));
        let mut nominal = Duration::from_millis(100);
        let mut distinct = std::collections::HashSet::new();
        for _ in 0..30 {
            let d = p.next().unwrap();
            assert!(d >= nominal / 2 && d <= nominal, "{d:?} vs {nominal:?}");
            distinct.insert(d);
            nominal = (nominal * 2).min(Duration::from_secs(10));
        }
        assert!(distinct.len() > 5, "jitter varies the delays");
    }

    #[test]
    fn disabled_never_retries() {
        let r = Reconnect::disabled();
        assert!(!r.is_enabled());
        let p = r.policy();
        p.reset();
        assert_eq!(p.next(), None);
    }

    #[test]
    fn iterator_policies_restart_on_reset() {
        let r = Reconnect::delays(|| [Duration::from_secs(1), Duration::from_secs(2)]);
        let p = r.policy();
        p.reset();
        assert_eq!(p.next(), Some(Duration::from_secs(1)));
        assert_eq!(p.next(), Some(Duration::from_secs(2)));
        assert_eq!(p.next(), None);
        p.reset();
        assert_eq!(p.next(), Some(Duration::from_secs(1)));
    }

    struct Counting(u32);
    impl ReconnectPolicy for Counting {
        fn reset(&mut self) {
            self.0 = 0;
        }
        fn next(&mut self) -> Option<Duration> {
            self.0 += 1;
            (self.0 <= 2).then_some(Duration::from_millis(5))
        }
    }

    #[test]
    fn custom_policies_are_made_per_connection() {
        let r = Reconnect::custom(|| Counting(0));
        let (a, b) = (r.policy(), r.policy());
        a.reset();
        b.reset();
        assert!(a.next().is_some() && a.next().is_some() && a.next().is_none());
        assert!(b.next().is_some(), "b has its own state");
    }
}
