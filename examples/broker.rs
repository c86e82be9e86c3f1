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
//! - A receiver with a dynamic source gets a new reply queue.
//! - A receiver with `distribution-mode` `copy` browses: it sees the
//!   messages without taking them.
//! - A sender without a target address (anonymous relay) routes each
//!   message by its `to`.
//!
//! Messages are forwarded as the bytes they arrived in
//! (`Delivery::payload` to `Sender::send_encoded`), never re-encoded: only a
//! `modified` outcome, which changes the header or annotations, re-encodes.
//!
//! Options: `-a HOST:PORT` (default `localhost:5672`; port 0 picks a free
//! one), `--handshake-timeout-ms N` (default 10000), `--prefetch N`
//! (messages in flight per consumer, default 64), `--credit N` (credit
//! window of the links that send to us, default 100). Prints
//! `Listening on ADDR` once ready.

use aqueduct::{Connection, IncomingEndpoint, ListenOptions, Message, Outcome, ReceiverOptions};
use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

enum Cmd {
    /// An encoded message.
    Publish(Bytes),
    Subscribe {
        id: u64,
        sender: aqueduct::Sender,
        browse: bool,
    },
    Unsubscribe(u64),
}

type QueueTx = mpsc::UnboundedSender<Cmd>;

struct Broker {
    queues: Mutex<HashMap<String, QueueTx>>,
    ids: AtomicU64,
    prefetch: usize,
    credit: u32,
}

impl Broker {
    /// The queue of `address`, created (with its task) if missing.
    fn queue(self: &Arc<Self>, address: &str, dynamic: bool) -> QueueTx {
        let mut queues = self.queues.lock().unwrap();
        if let Some(q) = queues.get(address) {
            return q.clone();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        queues.insert(address.to_string(), tx.clone());
        let queue = Queue {
            messages: VecDeque::new(),
            next_seq: 0,
            consumers: Vec::new(),
            next: 0,
            prefetch: self.prefetch,
        };
        let broker = dynamic.then(|| (self.clone(), address.to_string()));
        tokio::spawn(queue.run(rx, broker));
        tx
    }
}

struct Consumer {
    id: u64,
    sender: aqueduct::Sender,
    browse: bool,
    in_flight: usize,
    /// For a browser: the sequence number of the next message it sees.
    cursor: u64,
}

/// A send in flight: consumer, sequence number, our copy of the message
/// (none for a browser) and the outcome.
type InFlight = BoxFuture<'static, (u64, u64, Option<Bytes>, aqueduct::Result<Outcome>)>;

struct Queue {
    /// Encoded messages by sequence number, in order.
    messages: VecDeque<(u64, Bytes)>,
    next_seq: u64,
    consumers: Vec<Consumer>,
    /// Round-robin position among the consumers.
    next: usize,
    prefetch: usize,
}

impl Queue {
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Cmd>,
        dynamic: Option<(Arc<Broker>, String)>,
    ) {
        let mut in_flight = FuturesUnordered::<InFlight>::new();
        loop {
            self.dispatch(&mut in_flight);
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(Cmd::Publish(m)) => {
                        self.messages.push_back((self.next_seq, m));
                        self.next_seq += 1;
                    }
                    Some(Cmd::Subscribe { id, sender, browse }) => self.consumers.push(Consumer {
                        id, sender, browse, in_flight: 0, cursor: 0,
                    }),
                    Some(Cmd::Unsubscribe(id)) => {
                        self.consumers.retain(|c| c.id != id);
                        if self.consumers.is_empty() {
                            if let Some((broker, name)) = &dynamic {
                                // A dynamic queue lives as long as its consumer.
                                broker.queues.lock().unwrap().remove(name);
                                return;
                            }
                        }
                    }
                    None => return,
                },
                Some((id, seq, copy, outcome)) = in_flight.next(), if !in_flight.is_empty() => {
                    self.settled(id, seq, copy, outcome);
                }
            }
        }
    }

    fn settled(
        &mut self,
        id: u64,
        seq: u64,
        copy: Option<Bytes>,
        outcome: aqueduct::Result<Outcome>,
    ) {
        let consumer = self.consumers.iter().position(|c| c.id == id);
        if let Some(i) = consumer {
            self.consumers[i].in_flight -= 1;
        }
        let requeue = match outcome {
            Ok(Outcome::Released) => copy,
            Ok(Outcome::Modified {
                delivery_failed,
                message_annotations,
                ..
            }) => copy.map(|bytes| {
                // The one case that re-encodes: the message changes.
                let Ok(mut m) = Message::decode(bytes.clone()) else {
                    return bytes;
                };
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
            }),
            Ok(_) => None, // accepted, rejected or presettled: done with it
            Err(_) => {
                // The link or connection is gone: so is the consumer.
                if let Some(i) = consumer {
                    self.remove(i);
                }
                copy
            }
        };
        if let Some(m) = requeue {
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
        // Forget consumers whose connection has ended.
        while let Some(i) = self
            .consumers
            .iter()
            .position(|c| c.sender.connection().error().is_some())
        {
            self.remove(i);
        }
        // Browsers see what is queued without taking it.
        for c in self.consumers.iter_mut().filter(|c| c.browse) {
            while c.in_flight < self.prefetch {
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
            let Some(i) = (0..n).map(|k| (self.next + k) % n).find(|&i| {
                !self.consumers[i].browse && self.consumers[i].in_flight < self.prefetch
            }) else {
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

/// Serves one connection: what the peer sends goes to queues; what it
/// receives comes from them.
async fn serve(broker: Arc<Broker>, conn: Connection) {
    let mut subscriptions: Vec<(u64, QueueTx)> = Vec::new();
    while let Some(endpoint) = conn.next_incoming().await {
        let IncomingEndpoint::Link(link) = endpoint else {
            continue; // sessions are accepted by themselves
        };
        if link.is_sender() {
            // The peer sends: to the target's queue, or by each message's `to`.
            let address = link.address().map(str::to_string);
            let opts = ReceiverOptions::default().credit_window(broker.credit);
            let Ok(mut receiver) = link.accept_receiver(None, opts) else {
                break;
            };
            let broker = broker.clone();
            tokio::spawn(async move {
                let mut last: Option<(String, QueueTx)> = None;
                while let Some(delivery) = receiver.next().await {
                    let Ok(delivery) = delivery else { continue }; // undecodable: rejected
                    let Some(to) = address.as_deref().or(delivery.message().to()) else {
                        let _ = delivery
                            .reject("amqp:precondition-failed", "no address")
                            .await;
                        continue;
                    };
                    if last.as_ref().is_none_or(|(a, _)| a != to) {
                        last = Some((to.to_string(), broker.queue(to, false)));
                    }
                    let q = &last.as_ref().expect("set").1;
                    // Queued as it arrived; dropping the delivery accepts it.
                    let _ = q.send(Cmd::Publish(delivery.payload().clone()));
                }
            });
        } else {
            // The peer receives: subscribe it to a queue.
            let dynamic = link.is_dynamic();
            let address = if dynamic {
                format!("dynamic-{}", uuid::Uuid::new_v4())
            } else {
                match link.address() {
                    Some(a) => a.to_string(),
                    None => {
                        link.refuse("amqp:invalid-field", "a source address is required");
                        continue;
                    }
                }
            };
            let browse = link
                .source()
                .and_then(|s| s.distribution_mode.as_ref())
                .is_some_and(|m| m.as_str() == "copy");
            let q = broker.queue(&address, dynamic);
            let Ok(sender) = link.accept_sender(dynamic.then(|| address.clone())) else {
                break;
            };
            let id = broker.ids.fetch_add(1, Ordering::Relaxed);
            let _ = q.send(Cmd::Subscribe { id, sender, browse });
            subscriptions.push((id, q));
        }
    }
    // The connection is gone: its consumers too (their messages in flight
    // come back to the queues as their sends fail).
    for (id, q) in subscriptions {
        let _ = q.send(Cmd::Unsubscribe(id));
    }
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    let i = args.iter().position(|a| a == name)?;
    match args.get(i + 1).map(|v| v.parse()) {
        Some(Ok(v)) => Some(v),
        _ => {
            eprintln!("{name} needs a value");
            std::process::exit(2);
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), aqueduct::Error> {
    let args: Vec<String> = std::env::args().collect();
    let address: String = arg(&args, "-a").unwrap_or_else(|| "localhost:5672".into());
    let handshake = Duration::from_millis(arg(&args, "--handshake-timeout-ms").unwrap_or(10_000));
    let broker = Arc::new(Broker {
        queues: Mutex::new(HashMap::new()),
        ids: AtomicU64::new(0),
        prefetch: arg(&args, "--prefetch").unwrap_or(64usize).max(1),
        credit: arg(&args, "--credit").unwrap_or(100u32).max(1),
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
