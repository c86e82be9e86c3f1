//! Reconnect and failover as a `tower::Layer` around a connector: the
//! policy's delays, the URL rotation, and which errors are worth another
//! attempt. The connection's driver asks the layered service for a
//! transport when it starts and each time its transport is lost.

use super::connector::{Endpoint, Transport};
use super::events::{ConnectionEvent, EventHub};
use super::policy::{Reconnect, SharedPolicy};
use crate::error::{Error, ErrorKind};
use futures::future::BoxFuture;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower::{BoxError, Service, ServiceExt};

/// How long a connection must stay up before the policy starts afresh
/// after it is lost, unless set with [`ReconnectLayer::stable_after`].
pub(crate) const STABLE_AFTER: Duration = Duration::from_secs(5);

/// What the connection asks its reconnect service for: the first
/// connection, or a new one after the last was lost.
#[derive(Debug)]
#[non_exhaustive]
pub struct NextConnection {
    /// True once a connection was made and lost; false for the first.
    pub reconnect: bool,
}

impl NextConnection {
    /// The request for the first connection.
    pub fn first() -> Self {
        NextConnection { reconnect: false }
    }

    /// The request for a new connection after one was lost.
    pub fn after_loss() -> Self {
        NextConnection { reconnect: true }
    }
}

/// A layer that turns a connector (`Service<Endpoint, Response =
/// Transport>`) into a [`ReconnectService`]: each call makes a connection,
/// trying the URLs in turn with the policy's delays until one opens, an
/// error that no retry can fix comes back, or the policy gives up.
#[derive(Clone, Debug)]
pub struct ReconnectLayer {
    reconnect: Reconnect,
    endpoints: Arc<[Endpoint]>,
    stable_after: Duration,
}

impl ReconnectLayer {
    /// Reconnects over `endpoints` (at least one) with `reconnect`.
    pub fn new(reconnect: impl Into<Reconnect>, endpoints: Vec<Endpoint>) -> Self {
        ReconnectLayer {
            reconnect: reconnect.into(),
            endpoints: endpoints.into(),
            stable_after: STABLE_AFTER,
        }
    }

    /// How long a connection must stay up for the policy to be reset when
    /// it is lost (default 5 s). A peer that accepts connections and drops
    /// them at once therefore meets ever longer delays, never a hot loop.
    #[must_use]
    pub fn stable_after(mut self, d: Duration) -> Self {
        self.stable_after = d;
        self
    }
}

impl<S> tower::Layer<S> for ReconnectLayer {
    type Service = ReconnectService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ReconnectService {
            inner,
            policy: self.reconnect.policy(),
            enabled: self.reconnect.is_enabled(),
            endpoints: self.endpoints.clone(),
            stable_after: self.stable_after,
            state: Arc::new(Mutex::new(LayerState {
                phase: Phase::Idle,
                next_endpoint: 0,
                connected_at: None,
                last_error: None,
            })),
            events: Arc::new(EventHub::default()),
        }
    }
}

/// Where the reconnect state machine is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// No connection and none asked for.
    Idle,
    /// An attempt is under way.
    Connecting,
    /// A connection is up.
    Connected,
    /// Waiting out the policy's delay before the next attempt.
    Waiting,
}

#[derive(Debug)]
struct LayerState {
    phase: Phase,
    next_endpoint: usize,
    connected_at: Option<Instant>,
    last_error: Option<Error>,
}

/// The reconnect service: see [`ReconnectLayer`]. Its clones share one
/// policy, one rotation and one event stream (a connection's).
#[derive(Clone)]
pub struct ReconnectService<S> {
    inner: S,
    policy: SharedPolicy,
    enabled: bool,
    endpoints: Arc<[Endpoint]>,
    stable_after: Duration,
    state: Arc<Mutex<LayerState>>,
    events: Arc<EventHub>,
}

impl<S> fmt::Debug for ReconnectService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReconnectService")
            .field("endpoints", &self.endpoints)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

impl<S> ReconnectService<S> {
    /// Whether lost connections are retried at all.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// The last failed attempt's error, if any.
    pub fn last_error(&self) -> Option<Error> {
        self.lock().last_error.clone()
    }

    pub(crate) fn events(&self) -> Arc<EventHub> {
        self.events.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LayerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn enter(&self, phase: Phase) {
        let mut g = self.lock();
        if g.phase != phase {
            tracing::trace!(from = ?g.phase, to = ?phase, "reconnect state");
            g.phase = phase;
        }
    }
}

/// An error from a layer under the reconnect layer as our error: ours
/// as it is, anything else (a tower timeout, say) as a retriable timeout
/// or I/O error.
fn to_error(e: BoxError) -> Error {
    match e.downcast::<Error>() {
        Ok(e) => *e,
        Err(e) => {
            let kind = if e.is::<tower::timeout::error::Elapsed>() {
                ErrorKind::Timeout
            } else {
                ErrorKind::Io
            };
            Error::new(kind, e.to_string())
        }
    }
}

impl<S> Service<NextConnection> for ReconnectService<S>
where
    S: Service<Endpoint, Response = Transport> + Clone + Send + 'static,
    S::Error: Into<BoxError> + Send,
    S::Future: Send,
{
    type Response = Transport;
    type Error = Error;
    type Future = BoxFuture<'static, Result<Transport, Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: NextConnection) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.connect(req.reconnect).await })
    }
}

impl<S> ReconnectService<S>
where
    S: Service<Endpoint, Response = Transport> + Clone + Send + 'static,
    S::Error: Into<BoxError> + Send,
    S::Future: Send,
{
    async fn connect(mut self, reconnect: bool) -> Result<Transport, Error> {
        if reconnect && !self.enabled {
            return Err(self.last_error().unwrap_or_else(|| {
                Error::new(
                    ErrorKind::Closed,
                    "the connection was lost; reconnect is off",
                )
            }));
        }
        // A new reconnect process: the policy starts afresh before the
        // first connect, and after a connection that stayed up long enough.
        let stable = {
            let g = self.lock();
            g.connected_at
                .is_some_and(|t| t.elapsed() >= self.stable_after)
        };
        if !reconnect || stable {
            self.policy.reset();
        }
        let mut attempt: u32 = 0;
        loop {
            let delay = if !reconnect && attempt == 0 {
                Duration::ZERO
            } else {
                match self.policy.next() {
                    Some(d) => d,
                    None => {
                        self.enter(Phase::Idle);
                        let error = self.last_error().unwrap_or_else(|| {
                            Error::new(ErrorKind::Closed, "the reconnect policy gave up")
                        });
                        tracing::warn!(%error, "reconnect: giving up");
                        return Err(error);
                    }
                }
            };
            attempt += 1;
            let endpoint = {
                let mut g = self.lock();
                let e = self.endpoints[g.next_endpoint % self.endpoints.len()].clone();
                g.next_endpoint = (g.next_endpoint + 1) % self.endpoints.len();
                e
            };
            let url = endpoint.url();
            if reconnect || attempt > 1 {
                tracing::info!(attempt, ?delay, %url, "reconnecting");
                self.events.emit(ConnectionEvent::Reconnecting {
                    attempt,
                    delay,
                    url: url.clone(),
                });
            }
            if !delay.is_zero() {
                self.enter(Phase::Waiting);
                tokio::time::sleep(delay).await;
            }
            self.enter(Phase::Connecting);
            let result = match self.inner.ready().await {
                Ok(svc) => svc.call(endpoint).await.map_err(|e| to_error(e.into())),
                Err(e) => Err(to_error(e.into())),
            };
            match result {
                Ok(t) => {
                    let mut g = self.lock();
                    g.connected_at = Some(Instant::now());
                    g.last_error = None;
                    drop(g);
                    self.enter(Phase::Connected);
                    if reconnect || attempt > 1 {
                        tracing::info!(%url, attempt, "connected");
                    }
                    return Ok(t);
                }
                Err(error) => {
                    tracing::warn!(%error, attempt, %url, "connect attempt failed");
                    self.events.emit(ConnectionEvent::ConnectFailed {
                        attempt,
                        url,
                        error: error.clone(),
                    });
                    self.lock().last_error = Some(error.clone());
                    if !error.is_retriable() {
                        self.enter(Phase::Idle);
                        return Err(error);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::reconnect::policy::Exponential;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::Layer;

    /// A connector that fails every attempt with a retriable error and
    /// records which endpoint and when each attempt came.
    #[derive(Clone)]
    struct Failing {
        log: Arc<Mutex<Vec<(String, Duration)>>>,
        start: Instant,
        calls: Arc<AtomicUsize>,
        error: Error,
    }

    impl Service<Endpoint> for Failing {
        type Response = Transport;
        type Error = Error;
        type Future = BoxFuture<'static, Result<Transport, Error>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, e: Endpoint) -> Self::Future {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.log
                .lock()
                .unwrap()
                .push((e.url(), self.start.elapsed()));
            let error = self.error.clone();
            Box::pin(async move { Err(error) })
        }
    }

    fn failing(error: Error) -> Failing {
        Failing {
            log: Arc::default(),
            start: Instant::now(),
            calls: Arc::default(),
            error,
        }
    }

    fn endpoints(urls: &[&str]) -> Vec<Endpoint> {
        urls.iter().map(|u| Endpoint::new(u).unwrap()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_follow_the_schedule_and_rotate_urls() {
        let c = failing(Error::new(ErrorKind::Io, "refused"));
        let policy = Reconnect::exponential().max_attempts(10);
        let mut svc =
            ReconnectLayer::new(policy, endpoints(&["amqp://a", "amqp://b:5673"])).layer(c.clone());
        let err = svc.call(NextConnection::first()).await.unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Io);
        let log = c.log.lock().unwrap().clone();
        // The first attempt, then 10 retries at 0, 0.1, 0.2, ... capped at 10 s.
        let gaps_ms = [0, 0, 100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000];
        assert_eq!(log.len(), gaps_ms.len());
        let mut at = 0;
        for (i, ((url, when), gap)) in log.iter().zip(gaps_ms).enumerate() {
            at += gap;
            assert_eq!(when.as_millis(), at as u128, "attempt {i}");
            let want = if i % 2 == 0 {
                "amqp://a:5672"
            } else {
                "amqp://b:5673"
            };
            assert_eq!(url, want, "attempt {i}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn errors_no_retry_can_fix_end_at_once() {
        let c = failing(Error::new(ErrorKind::Authentication, "bad password"));
        let mut svc =
            ReconnectLayer::new(Reconnect::default(), endpoints(&["amqp://a"])).layer(c.clone());
        let err = svc.call(NextConnection::first()).await.unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Authentication);
        assert_eq!(c.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn disabled_tries_once_and_never_reconnects() {
        let c = failing(Error::new(ErrorKind::Io, "refused"));
        let mut svc =
            ReconnectLayer::new(Reconnect::disabled(), endpoints(&["amqp://a"])).layer(c.clone());
        assert!(svc.call(NextConnection::first()).await.is_err());
        assert_eq!(c.calls.load(Ordering::SeqCst), 1);
        assert!(svc.call(NextConnection::after_loss()).await.is_err());
        assert_eq!(c.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn events_report_each_failed_attempt_and_retry() {
        use futures::StreamExt;
        let c = failing(Error::new(ErrorKind::Io, "refused"));
        let policy = Exponential::default().max_attempts(2);
        let mut svc = ReconnectLayer::new(policy, endpoints(&["amqp://a", "amqp://b"])).layer(c);
        let hub = svc.events();
        let _ = svc.call(NextConnection::first()).await;
        hub.close();
        let events: Vec<String> = hub
            .subscribe()
            .map(|e| match e {
                ConnectionEvent::ConnectFailed { attempt, url, .. } => {
                    format!("failed {attempt} {url}")
                }
                ConnectionEvent::Reconnecting {
                    attempt,
                    delay,
                    url,
                } => format!("retry {attempt} {} {url}", delay.as_millis()),
                other => format!("{other:?}"),
            })
            .collect()
            .await;
        assert_eq!(
            events,
            [
                "failed 1 amqp://a:5672",
                "retry 2 0 amqp://b:5672",
                "failed 2 amqp://b:5672",
                "retry 3 100 amqp://a:5672",
                "failed 3 amqp://a:5672",
            ]
        );
    }

    #[test]
    fn url_and_urls_together_is_an_error() {
        let o = crate::ConnectOptions::new()
            .url("amqp://a")
            .urls(["amqp://b"]);
        assert_eq!(
            o.addresses().unwrap_err().kind(),
            &ErrorKind::InvalidArgument
        );
        let o = crate::ConnectOptions::new()
            .urls(["amqp://b"])
            .url("amqp://a");
        let e = o.addresses().unwrap_err();
        assert!(e.to_string().contains("not both"), "{e}");
        let o = crate::ConnectOptions::new().urls(["amqp://a", "amqps://b"]);
        let urls: Vec<String> = o
            .addresses()
            .unwrap()
            .into_iter()
            .map(|a| Endpoint::from(a).url())
            .collect();
        assert_eq!(urls, ["amqp://a:5672", "amqps://b:5671"]);
        let empty: [&str; 0] = [];
        assert!(crate::ConnectOptions::new()
            .urls(empty)
            .addresses()
            .is_err());
    }
}
