//! A fault-injection TCP proxy for tests: it sits in the test process
//! between a client and a broker, forwards bytes both ways, and cuts
//! connections on command, after a number of bytes, on a chosen AMQP frame
//! or at pseudo-random times, and can refuse new connections for a while.
//!
//! It follows the AMQP byte stream (8-byte protocol headers, then frames
//! with a 4-byte big-endian size) so that a cut can land just before or
//! after a frame whose performative matches a predicate. After a TLS
//! protocol header, or on bytes that do not frame, it stops parsing and
//! forwards the rest as opaque bytes (byte and time faults still apply).
//!
//! Bounded: each direction of each connection forwards through one
//! fixed buffer ([`BUF`] bytes) and reads again only once its last chunk is
//! written, so a slow reader slows the writer down. Dropping the [`Proxy`]
//! aborts every task it started and closes every connection.
#![allow(dead_code)]

use aqueduct::frame::Performative;
use aqueduct::types::{Decode, Decoder};
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The size of each direction's forwarding buffer; also the most of a
/// frame the proxy holds back to decode its performative.
pub(crate) const BUF: usize = 64 * 1024;

/// A direction of traffic through the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dir {
    /// From the client (the side that connected to the proxy) to the
    /// server (the upstream address).
    ToServer,
    /// From the server back to the client.
    ToClient,
}

impl Dir {
    fn index(self) -> usize {
        match self {
            Dir::ToServer => 0,
            Dir::ToClient => 1,
        }
    }
}

/// A snapshot of the proxy's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ProxyStats {
    /// Connections accepted and forwarded to the server.
    pub accepted: u64,
    /// Connections accepted and closed at once while refusing.
    pub refused: u64,
    /// Connections the proxy cut (each connection cut counts once).
    pub cuts: u64,
    /// Of those, cuts by a byte fault that left a frame (or protocol
    /// header) half forwarded.
    pub mid_frame_cuts: u64,
    /// Bytes forwarded from clients to the server.
    pub bytes_to_server: u64,
    /// Bytes forwarded from the server to clients.
    pub bytes_to_client: u64,
}

type FramePredicate = Box<dyn Fn(&Performative) -> bool + Send + Sync>;

/// A one-shot cut on a frame: before or after forwarding it.
struct FrameFault {
    after: bool,
    pred: FramePredicate,
}

/// Armed one-shot faults, per direction.
#[derive(Default)]
struct Faults {
    /// Bytes left to forward before a cut, per direction.
    bytes: [Option<u64>; 2],
    /// A frame to cut on, per direction.
    frame: [Option<FrameFault>; 2],
    /// A random byte schedule that re-arms `bytes` after each firing:
    /// the generator and the mean gap, per direction.
    random_bytes: [Option<(XorShift, u64)>; 2],
}

impl Faults {
    /// The byte fault in direction `i` fired: re-arm it from the random
    /// schedule, if there is one.
    fn byte_fault_fired(&mut self, i: usize) {
        self.bytes[i] = self.random_bytes[i]
            .as_mut()
            .map(|(rng, mean)| rng.below(mean.saturating_mul(2)) + 1);
    }
}

struct Shared {
    upstream: SocketAddr,
    faults: Mutex<Faults>,
    /// Refuse new connections while set.
    refusing: Mutex<(bool, Option<Instant>)>,
    /// Leave new connections in the listen backlog while set.
    stalled: watch::Sender<bool>,
    /// Bumped by `cut_all`: every connection live at the time ends.
    cut_gen: watch::Sender<u64>,
    /// The number of cuts so far (a watch so tests can wait for it).
    cuts: watch::Sender<u64>,
    accepted: AtomicU64,
    refused: AtomicU64,
    mid_frame_cuts: AtomicU64,
    bytes: [AtomicU64; 2],
}

impl Shared {
    fn is_refusing(&self) -> bool {
        let r = self.refusing.lock().unwrap();
        r.0 || r.1.is_some_and(|until| Instant::now() < until)
    }

    fn count_cut(&self) {
        self.cuts.send_modify(|c| *c += 1);
    }
}

/// The fault-injection proxy. See the module docs.
pub(crate) struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_task: JoinHandle<()>,
    random_task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every
        // connection task.
        self.accept_task.abort();
        if let Some(t) = self.random_task.lock().unwrap().take() {
            t.abort();
        }
    }
}

impl Proxy {
    /// Starts a proxy on `127.0.0.1:0` forwarding to `upstream`. No fault is
    /// armed and it accepts connections.
    pub(crate) async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            upstream,
            faults: Mutex::new(Faults::default()),
            refusing: Mutex::new((false, None)),
            stalled: watch::channel(false).0,
            cut_gen: watch::channel(0).0,
            cuts: watch::channel(0).0,
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            mid_frame_cuts: AtomicU64::new(0),
            bytes: [AtomicU64::new(0), AtomicU64::new(0)],
        });
        let accept_task = tokio::spawn(accept_loop(listener, shared.clone()));
        Proxy {
            addr,
            shared,
            accept_task,
            random_task: Mutex::new(None),
        }
    }

    /// The address the proxy listens on.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `amqp://` and the address the proxy listens on.
    pub(crate) fn url(&self) -> String {
        format!("amqp://{}", self.addr)
    }

    /// Cuts every current connection now: the proxy closes both of its
    /// sockets, so both the client and the server see the connection end.
    pub(crate) fn cut_all(&self) {
        self.shared.cut_gen.send_modify(|g| *g += 1);
    }

    /// Cuts the connection that forwards the `n`th next byte in `dir`
    /// (counted over all connections), right after forwarding that byte
    /// (`n == 0`: before forwarding anything more). One-shot; replaces an
    /// earlier byte fault in that direction.
    pub(crate) fn cut_after_bytes(&self, dir: Dir, n: u64) {
        self.shared.faults.lock().unwrap().bytes[dir.index()] = Some(n);
    }

    /// Cuts the connection just before it forwards the first frame in `dir`
    /// whose performative matches `pred` (the frame is not forwarded).
    /// One-shot; replaces an earlier frame fault in that direction.
    pub(crate) fn cut_on_frame(
        &self,
        dir: Dir,
        pred: impl Fn(&Performative) -> bool + Send + Sync + 'static,
    ) {
        self.set_frame_fault(dir, false, Box::new(pred));
    }

    /// As [`Proxy::cut_on_frame`], but cuts right after forwarding the
    /// matching frame.
    pub(crate) fn cut_after_frame(
        &self,
        dir: Dir,
        pred: impl Fn(&Performative) -> bool + Send + Sync + 'static,
    ) {
        self.set_frame_fault(dir, true, Box::new(pred));
    }

    fn set_frame_fault(&self, dir: Dir, after: bool, pred: FramePredicate) {
        self.shared.faults.lock().unwrap().frame[dir.index()] = Some(FrameFault { after, pred });
    }

    /// Whether a byte or frame fault in `dir` is still armed (not fired).
    pub(crate) fn armed(&self, dir: Dir) -> bool {
        let f = self.shared.faults.lock().unwrap();
        f.bytes[dir.index()].is_some() || f.frame[dir.index()].is_some()
    }

    /// Refuses new connections (accepts and at once closes them, so that a
    /// client's connect fails promptly) while `on`; existing connections
    /// are not touched. `refuse(false)` also ends a [`Proxy::refuse_for`].
    pub(crate) fn refuse(&self, on: bool) {
        *self.shared.refusing.lock().unwrap() = (on, None);
    }

    /// Stops accepting new connections while `on`: they wait in the
    /// listen backlog (the TCP connect succeeds, nothing answers), so a
    /// client's open times out; `false` accepts them again, including
    /// those that waited. Existing connections are not touched.
    pub(crate) fn stop_accepting(&self, on: bool) {
        self.shared.stalled.send_replace(on);
    }

    /// Refuses new connections for `d` from now, then accepts again.
    pub(crate) fn refuse_for(&self, d: Duration) {
        *self.shared.refusing.lock().unwrap() = (false, Some(Instant::now() + d));
    }

    /// Cuts all connections at pseudo-random times: the gaps are drawn
    /// uniformly from `(0, 2 * mean_interval]` by a xorshift generator
    /// seeded with `seed`, so the schedule is the same on every run. Runs
    /// until [`Proxy::stop_random_cuts`] or the proxy is dropped; replaces an
    /// earlier schedule. Each firing that finds no connection cuts nothing.
    pub(crate) fn random_cuts(&self, seed: u64, mean_interval: Duration) {
        let shared = self.shared.clone();
        let mut rng = XorShift::new(seed);
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(rng.gap(mean_interval)).await;
                shared.cut_gen.send_modify(|g| *g += 1);
            }
        });
        if let Some(old) = self.random_task.lock().unwrap().replace(task) {
            old.abort();
        }
    }

    /// Cuts connections at pseudo-random points of the byte stream in
    /// `dir`: after each cut the next one comes after a number of bytes
    /// drawn uniformly from `[1, 2 * mean_bytes]` by a xorshift generator
    /// seeded with `seed`, counted over all connections. The points (in
    /// bytes) are the same on every run, and most land inside a frame.
    /// Replaces the byte fault in `dir`; [`Proxy::stop_random_byte_cuts`]
    /// ends it.
    pub(crate) fn random_byte_cuts(&self, dir: Dir, seed: u64, mean_bytes: u64) {
        let mut f = self.shared.faults.lock().unwrap();
        f.random_bytes[dir.index()] = Some((XorShift::new(seed), mean_bytes.max(1)));
        f.byte_fault_fired(dir.index());
    }

    /// Ends [`Proxy::random_byte_cuts`] in `dir` (and any byte fault armed
    /// there).
    pub(crate) fn stop_random_byte_cuts(&self, dir: Dir) {
        let mut f = self.shared.faults.lock().unwrap();
        f.random_bytes[dir.index()] = None;
        f.bytes[dir.index()] = None;
    }

    /// Stops the cuts [`Proxy::random_cuts`] started.
    pub(crate) fn stop_random_cuts(&self) {
        if let Some(t) = self.random_task.lock().unwrap().take() {
            t.abort();
        }
    }

    /// The counters now.
    pub(crate) fn stats(&self) -> ProxyStats {
        let s = &self.shared;
        ProxyStats {
            accepted: s.accepted.load(Ordering::Relaxed),
            refused: s.refused.load(Ordering::Relaxed),
            cuts: *s.cuts.borrow(),
            mid_frame_cuts: s.mid_frame_cuts.load(Ordering::Relaxed),
            bytes_to_server: s.bytes[0].load(Ordering::Relaxed),
            bytes_to_client: s.bytes[1].load(Ordering::Relaxed),
        }
    }

    /// Waits until the proxy has cut at least `n` connections in all.
    pub(crate) async fn cuts_reached(&self, n: u64) {
        let mut rx = self.shared.cuts.subscribe();
        rx.wait_for(|c| *c >= n).await.unwrap();
    }
}

/// A xorshift64* generator: deterministic from its seed, no `rand` needed.
pub(crate) struct XorShift(u64);

impl XorShift {
    /// A generator from `seed` (0 is replaced by a fixed non-zero seed).
    pub(crate) fn new(seed: u64) -> Self {
        XorShift(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next pseudo-random number.
    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number uniform in `[0, n)` (0 when `n` is 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// A gap uniform in `(0, 2 * mean]`, at microsecond resolution.
    pub(crate) fn gap(&mut self, mean: Duration) -> Duration {
        let span = (mean.as_micros() as u64).saturating_mul(2).max(1);
        Duration::from_micros(1 + self.next_u64() % span)
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut conns = tokio::task::JoinSet::new();
    let mut stalled = shared.stalled.subscribe();
    loop {
        if *stalled.borrow_and_update() {
            tokio::select! {
                _ = stalled.changed() => {}
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
            continue;
        }
        tokio::select! {
            _ = stalled.changed() => {}
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                if shared.is_refusing() {
                    shared.refused.fetch_add(1, Ordering::Relaxed);
                    drop(client);
                    continue;
                }
                shared.accepted.fetch_add(1, Ordering::Relaxed);
                conns.spawn(serve(client, shared.clone()));
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// Why a pump stopped early.
enum Stop {
    /// A fault fired: cut the connection.
    Cut,
    /// A socket failed.
    Io,
}

/// Forwards one connection until both sides close, a socket fails or a
/// fault cuts it.
async fn serve(client: TcpStream, shared: Arc<Shared>) {
    let mut cut_rx = shared.cut_gen.subscribe();
    let Ok(server) = TcpStream::connect(shared.upstream).await else {
        return; // dropping `client` closes it: the client sees the end
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let both = async {
        tokio::try_join!(
            pump(Dir::ToServer, cr, sw, &shared),
            pump(Dir::ToClient, sr, cw, &shared)
        )
    };
    let cut = tokio::select! {
        r = both => matches!(r, Err(Stop::Cut)),
        _ = cut_rx.changed() => true,
    };
    if cut {
        shared.count_cut();
    }
    // Returning drops all four halves, closing both sockets.
}

/// Where the parser stands in one direction's byte stream.
#[derive(Clone, Copy)]
enum Parse {
    /// Bytes left in the current protocol header or frame (0: at a boundary).
    Unit(u64),
    /// Not AMQP framing (TLS, or bytes that do not frame): opaque.
    Opaque,
}

/// Forwards `src` to `dst` through one fixed buffer, applying the faults
/// armed for `dir`. `Ok` when `src` ends (after closing `dst`'s write
/// side).
async fn pump(
    dir: Dir,
    mut src: impl AsyncRead + Unpin,
    mut dst: impl AsyncWrite + Unpin,
    shared: &Shared,
) -> Result<(), Stop> {
    let mut buf = vec![0u8; BUF];
    let mut len = 0;
    let mut eof = false;
    let mut parse = Parse::Unit(0);
    // Cut once the current unit has been forwarded.
    let mut cut_at_unit_end = false;
    loop {
        // Decide how many buffered bytes may go now; 0 = read more first.
        let mut ready = match parse {
            Parse::Opaque => len,
            Parse::Unit(left) if left > 0 => len.min(left as usize),
            Parse::Unit(_) => match at_boundary(dir, &buf[..len], eof, shared) {
                Boundary::NeedMore => 0,
                Boundary::Opaque => {
                    parse = Parse::Opaque;
                    len
                }
                Boundary::Unit {
                    size,
                    cut_before,
                    cut_after,
                } => {
                    if cut_before {
                        return Err(Stop::Cut);
                    }
                    cut_at_unit_end = cut_after;
                    parse = Parse::Unit(size);
                    len.min(size as usize)
                }
            },
        };
        if ready == 0 {
            if eof {
                // A partial header at the end: forward it and finish.
                if len > 0 {
                    dst.write_all(&buf[..len]).await.map_err(|_| Stop::Io)?;
                }
                let _ = dst.shutdown().await;
                return Ok(());
            }
            let n = src.read(&mut buf[len..]).await.map_err(|_| Stop::Io)?;
            if n == 0 {
                eof = true;
            }
            len += n;
            continue;
        }
        // The byte fault may shorten the chunk and cut after it.
        let mut cut_now = false;
        {
            let mut f = shared.faults.lock().unwrap();
            if let Some(left) = f.bytes[dir.index()] {
                if (ready as u64) >= left {
                    ready = left as usize;
                    cut_now = true;
                    f.byte_fault_fired(dir.index());
                } else {
                    f.bytes[dir.index()] = Some(left - ready as u64);
                }
            }
        }
        if ready > 0 {
            dst.write_all(&buf[..ready]).await.map_err(|_| Stop::Io)?;
            shared.bytes[dir.index()].fetch_add(ready as u64, Ordering::Relaxed);
            buf.copy_within(ready..len, 0);
            len -= ready;
            if let Parse::Unit(left) = &mut parse {
                *left -= ready as u64;
                if *left == 0 && cut_at_unit_end {
                    cut_now = true;
                }
            }
        }
        if cut_now {
            if matches!(parse, Parse::Unit(left) if left > 0) {
                shared.mid_frame_cuts.fetch_add(1, Ordering::Relaxed);
            }
            let _ = dst.flush().await;
            return Err(Stop::Cut);
        }
    }
}

enum Boundary {
    NeedMore,
    Opaque,
    Unit {
        size: u64,
        cut_before: bool,
        cut_after: bool,
    },
}

/// Classifies the unit starting at `b[0]`: a protocol header or a frame,
/// and whether an armed frame fault matches it.
fn at_boundary(dir: Dir, b: &[u8], eof: bool, shared: &Shared) -> Boundary {
    if b.len() < 8 {
        return if eof && !b.is_empty() {
            Boundary::Opaque
        } else {
            Boundary::NeedMore
        };
    }
    if &b[..4] == b"AMQP" {
        // A TLS header: what follows is encrypted, stop parsing after it.
        if b[4] == 2 {
            return Boundary::Opaque;
        }
        return Boundary::Unit {
            size: 8,
            cut_before: false,
            cut_after: false,
        };
    }
    let size = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
    let doff = b[4] as usize * 4;
    if size < 8 || doff < 8 || doff > size {
        return Boundary::Opaque;
    }
    let unit = Boundary::Unit {
        size: size as u64,
        cut_before: false,
        cut_after: false,
    };
    // Only hold bytes back when a frame fault waits in this direction.
    if shared.faults.lock().unwrap().frame[dir.index()].is_none() || b[5] != 0 || doff == size {
        return unit;
    }
    // Decode the performative from (a bounded prefix of) the frame.
    let need = size.min(BUF);
    if b.len() < need {
        return if eof { unit } else { Boundary::NeedMore };
    }
    let body = Bytes::copy_from_slice(&b[doff..need]);
    let Ok(p) = Performative::decode(&mut Decoder::new(body)) else {
        return unit;
    };
    let mut f = shared.faults.lock().unwrap();
    let slot = &mut f.frame[dir.index()];
    match slot {
        Some(fault) if (fault.pred)(&p) => {
            let after = fault.after;
            *slot = None;
            Boundary::Unit {
                size: size as u64,
                cut_before: !after,
                cut_after: after,
            }
        }
        _ => unit,
    }
}
