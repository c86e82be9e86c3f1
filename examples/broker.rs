//! A queue broker in the spirit of Proton's broker.py.
//!
//! One queue per address, created on demand; one task per queue owns its
//! messages and its consumers, and the links talk to it over a channel.
//!
//! - Competing consumers: each message goes to one consumer (round robin).
//! - Credit: our `Sender` queues messages until the consumer grants credit
//!   and `send` resolves with the outcome, so each consumer gets at most
//!   `--prefetch` messages in flight; a slow consumer can't hoard the queue.
//! - Outcomes: accepted and rejected messages are gone; released and
//!   modified ones go back to their place in the queue and are redelivered
//!   (modified with `delivery-failed` counts a failed delivery). Messages in
//!   flight to a consumer that goes away go back to the queue too.
//! - A receiver with a dynamic source gets a new reply queue, deleted (with
//!   what it holds) as soon as that receiver detaches; its address is then
//!   refused with `amqp:not-found`.
//! - A receiver with `distribution-mode` `copy` browses: it sees the
//!   messages without taking them.
//! - A sender without a target address (anonymous relay) routes each
//!   message by its `to`.
//! - Bounded queues: a queue holds at most `--max-queue-depth` messages and
//!   `--max-queue-bytes` bytes (those in flight to consumers included).
//!   Producers get credit only while their queue has room, so a full queue
//!   stops them (backpressure: nothing is rejected or dropped); credit
//!   resumes when the queue drains below 90% of both limits. Credit already
//!   granted is honoured, so a queue may pass its byte limit by one credit
//!   window per producer, and its message limit by what several producers
//!   were granted at once. An anonymous relay gets credit while the queue
//!   it last sent to has room.
//! - A queue that is empty and has no links for `--queue-idle-timeout-ms`
//!   is deleted and its task ends.
//!
//! Messages are forwarded as the bytes they arrived in
//! (`Delivery::payload` to `Sender::send_encoded`), never re-encoded: only a
//! `modified` outcome, which changes the header or annotations, re-encodes.
//!
//! Prints `Listening on ADDR` once ready and `Deleted queue NAME` when it
//! deletes one. `--help` lists the options and their defaults.

use aqueduct::{
    Connection, IncomingEndpoint, ListenOptions, Message, Outcome, Receiver, ReceiverOptions,
};
use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};

const USAGE: &str = "\
usage: broker [options]
  -a HOST:PORT                 address to listen on (default localhost:5672; port 0 picks one)
  --handshake-timeout-ms N     time a client has to open its connection (default 10000)
  --prefetch N                 messages in flight per consumer (default 1000; a consumer's
                               own credit window bounds it too)
  --credit N                   credit window of the links that send to us, in messages
                               (default 1000)
  --credit-bytes N             ... and in bytes over the producer's average message size
                               (default 16777216, 16 MiB)
  --max-queue-depth N          messages a queue holds before its producers get no credit
                               (default 100000)
  --max-queue-bytes N          bytes a queue holds before its producers get no credit
                               (default 268435456, 256 MiB)
  --queue-idle-timeout-ms N    delete a queue that is empty and has no links for this long
                               (default 60000)
A full queue gives its producers credit again once it is below 90% of both limits.";

enum Cmd {
    /// An encoded message (already counted in the queue's depth).
    Publish(Bytes),
    Subscribe {
        id: u64,
        sender: aqueduct::Sender,
        browse: bool,
        /// The consumer's hold on the queue.
        queue: Arc<QueueRef>,
    },
}

/// A queue as its links see it. Every link holds one (the broker's map
/// too): a queue with no other holder has no links.
struct QueueRef {
    tx: mpsc::UnboundedSender<Cmd>,
    depth: Arc<Depth>,
}

#[derive(Clone, Copy)]
struct Limits {
    messages: usize,
    bytes: usize,
}

/// What a queue holds, counted by the links that publish and the queue
/// task that hands messages out.
struct Depth {
    limits: Limits,
    level: Mutex<Level>,
    /// Signalled when a full queue drains below the low-water mark.
    drained: Notify,
}

#[derive(Default)]
struct Level {
    messages: usize,
    bytes: usize,
    full: bool,
}

impl Depth {
    fn add(&self, bytes: usize) {
        let mut l = self.level.lock().unwrap();
        l.messages += 1;
        l.bytes += bytes;
        l.full |= l.messages >= self.limits.messages || l.bytes >= self.limits.bytes;
    }

    fn remove(&self, bytes: usize) {
        let mut l = self.level.lock().unwrap();
        l.messages -= 1;
        l.bytes -= bytes;
        let low = |n: usize| n - n / 10; // 90%
        if l.full && l.messages < low(self.limits.messages) && l.bytes < low(self.limits.bytes) {
            l.full = false;
            self.drained.notify_waiters();
        }
    }

    /// How many more messages of `size` bytes (an average) the queue
    /// takes; waits while it is full.
    async fn room(&self, size: usize) -> usize {
        loop {
            let drained = self.drained.notified();
            {
                let l = self.level.lock().unwrap();
                if !l.full {
                    let bytes = self.limits.bytes.saturating_sub(l.bytes) / size.max(1);
                    return self
                        .limits
                        .messages
                        .saturating_sub(l.messages)
                        .min(bytes.max(1));
                }
            }
            drained.await;
        }
    }
}

struct Broker {
    queues: Mutex<HashMap<String, Arc<QueueRef>>>,
    ids: AtomicU64,
    prefetch: usize,
    credit: u32,
    credit_bytes: usize,
    limits: Limits,
    idle: Duration,
}

const DYNAMIC: &str = "dynamic-";

impl Broker {
    /// The queue of `address`, created (with its task) if missing; `None`
    /// for a dynamic queue that is gone.
    fn queue(self: &Arc<Self>, address: &str) -> Option<Arc<QueueRef>> {
        let mut queues = self.queues.lock().unwrap();
        if let Some(q) = queues.get(address) {
            return Some(q.clone());
        }
        if address.starts_with(DYNAMIC) {
            return None;
        }
        Some(self.create(&mut queues, address.to_string(), false))
    }

    /// A new dynamic queue: its address and the queue.
    fn dynamic_queue(self: &Arc<Self>) -> (String, Arc<QueueRef>) {
        let address = format!("{DYNAMIC}{}", uuid::Uuid::new_v4());
        let mut queues = self.queues.lock().unwrap();
        let q = self.create(&mut queues, address.clone(), true);
        (address, q)
    }

    fn create(
        self: &Arc<Self>,
        queues: &mut HashMap<String, Arc<QueueRef>>,
        name: String,
        dynamic: bool,
    ) -> Arc<QueueRef> {
        let (tx, rx) = mpsc::unbounded_channel();
        let depth = Arc::new(Depth {
            limits: self.limits,
            level: Mutex::default(),
            drained: Notify::new(),
        });
        let q = Arc::new(QueueRef {
            tx,
            depth: depth.clone(),
        });
        queues.insert(name.clone(), q.clone());
        let queue = Queue {
            name,
            dynamic,
            broker: self.clone(),
            depth,
            messages: VecDeque::new(),
            next_seq: 0,
            consumers: Vec::new(),
            next: 0,
        };
        tokio::spawn(queue.run(rx));
        q
    }
}

struct Consumer {
    id: u64,
    sender: aqueduct::Sender,
    browse: bool,
    in_flight: usize,
    /// For a browser: the sequence number of the next message it sees.
    cursor: u64,
    _queue: Arc<QueueRef>,
}

/// A send in flight: consumer, sequence number, our copy of the message
/// (none for a browser) and the outcome.
type InFlight = BoxFuture<'static, (u64, u64, Option<Bytes>, aqueduct::Result<Outcome>)>;

struct Queue {
    name: String,
    dynamic: bool,
    broker: Arc<Broker>,
    depth: Arc<Depth>,
    /// Encoded messages by sequence number, in order.
    messages: VecDeque<(u64, Bytes)>,
    next_seq: u64,
    consumers: Vec<Consumer>,
    /// Round-robin position among the consumers.
    next: usize,
}

impl Queue {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Cmd>) {
        let mut in_flight = FuturesUnordered::<InFlight>::new();
        // Consumers whose link went away, by id.
        let mut detached = FuturesUnordered::<BoxFuture<'static, u64>>::new();
        loop {
            self.dispatch(&mut in_flight);
            let idle = self.consumers.is_empty() && self.messages.is_empty();
            tokio::select! {
                Some(cmd) = rx.recv() => match cmd {
                    Cmd::Publish(m) => {
                        self.messages.push_back((self.next_seq, m));
                        self.next_seq += 1;
                    }
                    Cmd::Subscribe { id, sender, browse, queue } => {
                        let s = sender.clone();
                        detached.push(Box::pin(async move { s.detached().await; id }));
                        self.consumers.push(Consumer {
                            id, sender, browse, in_flight: 0, cursor: 0, _queue: queue,
                        });
                    }
                },
                Some((id, seq, copy, outcome)) = in_flight.next(), if !in_flight.is_empty() => {
                    self.settled(id, seq, copy, outcome);
                }
                Some(id) = detached.next(), if !detached.is_empty() => {
                    if let Some(i) = self.consumers.iter().position(|c| c.id == id) {
                        self.remove(i);
                    }
                }
                _ = tokio::time::sleep(self.broker.idle), if idle && in_flight.is_empty() => {
                    if self.delete_if_unused() {
                        return;
                    }
                }
                else => return, // no sender left: the broker is gone
            }
            if self.dynamic && self.consumers.is_empty() {
                // A dynamic queue lives as long as its consumer.
                self.delete();
                return;
            }
        }
    }

    /// Deletes the queue if it is empty and no link holds it.
    fn delete_if_unused(&self) -> bool {
        let mut queues = self.broker.queues.lock().unwrap();
        let Some(q) = queues.get(&self.name) else {
            return true;
        };
        // Publishers count a message in before they send it, and links
        // take their hold on the queue under the map's lock.
        let empty = self.depth.level.lock().unwrap().messages == 0;
        if !empty || Arc::strong_count(q) > 1 {
            return false;
        }
        queues.remove(&self.name);
        println!("Deleted queue {}", self.name);
        true
    }

    fn delete(&self) {
        self.broker.queues.lock().unwrap().remove(&self.name);
        println!("Deleted queue {}", self.name);
        // Producers waiting for room get credit, and `not-found` for what they send.
        self.depth.level.lock().unwrap().full = false;
        self.depth.drained.notify_waiters();
    }

    fn settled(
        &mut self,
        id: u64,
        seq: u64,
        copy: Option<Bytes>,
        outcome: aqueduct::Result<Outcome>,
    ) {
        if let Some(i) = self.consumers.iter().position(|c| c.id == id) {
            self.consumers[i].in_flight -= 1;
            if outcome.is_err() {
                self.remove(i); // its link or connection is gone
            }
        }
        let Some(copy) = copy else {
            return; // a browser's: the queue still has it
        };
        let requeue = match outcome {
            Ok(Outcome::Released) => Some(copy.clone()),
            Ok(Outcome::Modified {
                delivery_failed,
                message_annotations,
                ..
            }) => Some(match Message::decode(copy.clone()) {
                // The one case that re-encodes: the message changes.
                Ok(mut m) => {
                    if delivery_failed {
                        m.set_delivery_count(m.delivery_count() + 1);
                    }
                    for (k, v) in message_annotations.into_iter().flat_map(|m| m.0) {
                        if let aqueduct::types::Value::Symbol(k) = k {
                            m.set_message_annotation(k, v);
                        }
                    }
                    let mut buf = BytesMut::with_capacity(m.encoded_len());
                    m.encode(&mut buf);
                    buf.freeze()
                }
                Err(_) => copy.clone(),
            }),
            Ok(_) => None, // accepted, rejected or presettled: done with it
            Err(_) => Some(copy.clone()),
        };
        self.depth.remove(copy.len());
        if let Some(m) = requeue {
            self.depth.add(m.len());
            let pos = self.messages.partition_point(|(s, _)| *s < seq);
            self.messages.insert(pos, (seq, m));
        }
    }

    fn remove(&mut self, i: usize) {
        self.consumers.remove(i);
        if self.next > i {
            self.next -= 1;
        }
    }

    fn dispatch(&mut self, in_flight: &mut FuturesUnordered<InFlight>) {
        let prefetch = self.broker.prefetch;
        // Browsers see what is queued without taking it.
        for c in self.consumers.iter_mut().filter(|c| c.browse) {
            while c.in_flight < prefetch {
                let pos = self.messages.partition_point(|(s, _)| *s < c.cursor);
                let Some((seq, m)) = self.messages.get(pos) else {
                    break;
                };
                c.cursor = seq + 1;
                c.in_flight += 1;
                let (id, seq, send) = (c.id, *seq, c.sender.send_encoded(m.clone()));
                in_flight.push(Box::pin(async move { (id, seq, None, send.await) }));
            }
        }
        // Then each message to one consumer with room, round robin.
        let n = self.consumers.len();
        while !self.messages.is_empty() {
            let Some(i) = (0..n)
                .map(|k| (self.next + k) % n)
                .find(|&i| !self.consumers[i].browse && self.consumers[i].in_flight < prefetch)
            else {
                break;
            };
            self.next = i + 1;
            let (seq, m) = self.messages.pop_front().expect("not empty");
            let c = &mut self.consumers[i];
            c.in_flight += 1;
            let (id, send) = (c.id, c.sender.send_encoded(m.clone()));
            in_flight.push(Box::pin(async move { (id, seq, Some(m), send.await) }));
        }
    }
}

/// Takes what a producer sends to the queue of its target or, for an
/// anonymous relay, of each message's `to`. Credit is granted while that
/// queue has room (for an anonymous relay: the queue it sent to last), at
/// most `--credit` messages and `--credit-bytes` over the producer's
/// average message size (assumed 64 KiB until one arrives).
async fn publish(broker: Arc<Broker>, mut receiver: Receiver, target: Option<Arc<QueueRef>>) {
    let mut average = 64 * 1024; // the producer's average message size
    let mut credit = 0; // what the producer may still send
    let mut top_up = true; // false after a grant, until the next delivery
    let mut last: Option<(String, Arc<QueueRef>)> = None;
    loop {
        let window = (broker.credit as usize).min((broker.credit_bytes / average).max(1));
        let queue = target.as_ref().or(last.as_ref().map(|(_, q)| q));
        let room = async {
            match queue {
                Some(q) => q.depth.room(average).await,
                None => window,
            }
        };
        let delivery = tokio::select! {
            room = room, if top_up && credit <= window / 2 => {
                let grant = room.min(window).saturating_sub(credit);
                if grant > 0 {
                    // If the link is gone, the stream still yields what
                    // arrived before it went, then ends.
                    let _ = receiver.add_credit(grant as u32);
                }
                credit += grant;
                top_up = false;
                continue;
            }
            d = receiver.next() => d,
        };
        let Some(delivery) = delivery else { return };
        (credit, top_up) = (credit.saturating_sub(1), true);
        let Ok(delivery) = delivery else { continue };
        let q = match &target {
            Some(q) => q,
            None => {
                // By the message's `to`, read from its properties section
                // alone: the broker forwards payloads, never decodes bodies.
                let to = Message::decode_properties(delivery.payload())
                    .ok()
                    .flatten()
                    .and_then(|p| p.to);
                let Some(to) = to.as_deref() else {
                    let _ = delivery
                        .reject("amqp:precondition-failed", "no address")
                        .await;
                    continue;
                };
                if last.as_ref().is_none_or(|(a, _)| a != to) {
                    last = broker.queue(to).map(|q| (to.to_string(), q));
                }
                match &last {
                    Some((_, q)) => q,
                    None => {
                        let _ = delivery.reject("amqp:not-found", "no such queue").await;
                        continue;
                    }
                }
            }
        };
        // Queued as it arrived; dropping the delivery accepts it.
        let payload = delivery.payload().clone();
        average = (average * 7 + payload.len().max(1)) / 8;
        q.depth.add(payload.len());
        if q.tx.send(Cmd::Publish(payload)).is_err() {
            // A dynamic queue deleted with its consumer.
            let _ = delivery.reject("amqp:not-found", "the queue is gone").await;
        }
    }
}

/// Serves one connection: what the peer sends goes to queues; what it
/// receives comes from them.
async fn serve(broker: Arc<Broker>, conn: Connection) {
    while let Some(endpoint) = conn.next_incoming().await {
        let IncomingEndpoint::Link(link) = endpoint else {
            continue; // sessions are accepted by themselves
        };
        if link.is_sender() {
            // The peer sends: to the target's queue, or by each message's `to`.
            let target = match link.address() {
                None => None,
                Some(a) => match broker.queue(a) {
                    Some(q) => Some(q),
                    None => {
                        link.refuse("amqp:not-found", "no such queue");
                        continue;
                    }
                },
            };
            // Credit is ours to grant (see `publish`).
            let opts = ReceiverOptions::default().credit_window(0);
            let Ok(receiver) = link.accept_receiver(None, opts) else {
                break;
            };
            tokio::spawn(publish(broker.clone(), receiver, target));
        } else {
            // The peer receives: subscribe it to a queue.
            let dynamic = link.is_dynamic();
            let (address, queue) = if dynamic {
                broker.dynamic_queue()
            } else {
                let Some(a) = link.address().map(str::to_string) else {
                    link.refuse("amqp:invalid-field", "a source address is required");
                    continue;
                };
                let Some(q) = broker.queue(&a) else {
                    link.refuse("amqp:not-found", "no such queue");
                    continue;
                };
                (a, q)
            };
            let browse = link
                .source()
                .and_then(|s| s.distribution_mode.as_ref())
                .is_some_and(|m| m.as_str() == "copy");
            let Ok(sender) = link.accept_sender(dynamic.then_some(address)) else {
                break;
            };
            let id = broker.ids.fetch_add(1, Ordering::Relaxed);
            let tx = queue.tx.clone();
            let _ = tx.send(Cmd::Subscribe {
                id,
                sender,
                browse,
                queue,
            });
        }
    }
    // The connection is gone: the queues see its consumers' links detach
    // (their messages in flight come back), its producers' tasks end.
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    let i = args.iter().position(|a| a == name)?;
    match args.get(i + 1).map(|v| v.parse()) {
        Some(Ok(v)) => Some(v),
        _ => {
            eprintln!("{name} needs a value\n{USAGE}");
            std::process::exit(2);
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), aqueduct::Error> {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return Ok(());
    }
    let address: String = arg(&args, "-a").unwrap_or_else(|| "localhost:5672".into());
    let handshake = Duration::from_millis(arg(&args, "--handshake-timeout-ms").unwrap_or(10_000));
    let broker = Arc::new(Broker {
        queues: Mutex::new(HashMap::new()),
        ids: AtomicU64::new(0),
        prefetch: arg(&args, "--prefetch").unwrap_or(1000usize).max(1),
        credit: arg(&args, "--credit").unwrap_or(1000u32).max(1),
        credit_bytes: arg(&args, "--credit-bytes").unwrap_or(16usize << 20).max(1),
        limits: Limits {
            messages: arg(&args, "--max-queue-depth")
                .unwrap_or(100_000usize)
                .max(1),
            bytes: arg(&args, "--max-queue-bytes")
                .unwrap_or(256usize << 20)
                .max(1),
        },
        idle: Duration::from_millis(arg(&args, "--queue-idle-timeout-ms").unwrap_or(60_000)),
    });
    let opts = ListenOptions::new(format!("amqp://{address}")).handshake_timeout(handshake);
    let mut listener = aqueduct::listen(opts).await?;
    println!("Listening on {}", listener.local_addr());
    let _ = std::io::stdout().flush();
    while let Some(incoming) = listener.next().await {
        match incoming.accept() {
            Ok(conn) => {
                tokio::spawn(serve(broker.clone(), conn));
            }
            Err(e) => eprintln!("accept failed: {e}"),
        }
    }
    Ok(())
}
