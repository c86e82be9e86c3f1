//! A request/reply server, like Proton's server.py: connects to a broker,
//! receives requests from an address and answers each on its reply-to
//! address with the body upper-cased, through one anonymous-relay sender.
//!
//! Usage: `server [-a HOST:PORT/ADDRESS]` (default `localhost:5672/examples`).
//! Try it with our broker and Proton's client.py:
//!
//! ```text
//! cargo run --example broker &
//! cargo run --example server &
//! python3 /usr/share/proton/examples/python/client.py
//! ```

use aqueduct::{Body, Message};
use futures::StreamExt;

/// Python's repr of a string, near enough: `'text'`.
fn repr(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The message as Proton's Python `print(message)` shows it.
fn describe(m: &Message) -> String {
    let mut props = Vec::new();
    if let Some(to) = m.to() {
        props.push(format!("address={}", repr(to)));
    }
    if let Some(r) = m.reply_to() {
        props.push(format!("reply_to={}", repr(r)));
    }
    if let Some(id) = m.id() {
        props.push(format!("id={id}"));
    }
    if let Some(id) = m.correlation_id() {
        props.push(format!("correlation_id={id}"));
    }
    match m.body() {
        Body::Empty => {}
        b => match b.as_str() {
            Some(s) => props.push(format!("body={}", repr(s))),
            None => props.push(format!("body={b}")),
        },
    }
    format!("Message({})", props.join(", "))
}

/// The body upper-cased: text, or ASCII letters of binary data.
fn upper(body: &Body) -> Body {
    match body {
        Body::Data(sections) => Body::Data(
            sections
                .iter()
                .map(|s| s.to_ascii_uppercase().into())
                .collect(),
        ),
        b => match b.as_str() {
            Some(s) => s.to_uppercase().into(),
            None => b.to_string().to_uppercase().into(),
        },
    }
}

#[tokio::main]
async fn main() -> Result<(), aqueduct::Error> {
    let args: Vec<String> = std::env::args().collect();
    let url = match args.iter().position(|a| a == "-a" || a == "--address") {
        Some(i) => args.get(i + 1).cloned().unwrap_or_default(),
        None => "localhost:5672/examples".to_string(),
    };
    let url = url.strip_prefix("amqp://").unwrap_or(&url);
    let (host_port, address) = url.split_once('/').unwrap_or((url, "examples"));
    println!("Listening on amqp://{host_port}/{address}");

    let conn = aqueduct::connect(format!("amqp://{host_port}")).await?;
    let mut receiver = conn.open_receiver(address).await?;
    let replies = conn.open_anonymous_sender().await?;
    while let Some(delivery) = receiver.next().await {
        let delivery = delivery?;
        let request = match delivery.message() {
            Ok(request) => request,
            Err(e) => {
                let _ = delivery.reject("amqp:decode-error", e.to_string()).await;
                continue;
            }
        };
        println!("Received {}", describe(request));
        let Some(reply_to) = request.reply_to() else {
            let _ = delivery.reject("amqp:invalid-field", "no reply-to").await;
            continue;
        };
        let mut reply = Message::new(upper(request.body()));
        reply.set_to(reply_to);
        if let Some(id) = request.correlation_id().or(request.id()) {
            reply.set_correlation_id(id.clone());
        }
        // `send` queues the reply at once (replies keep their order); the
        // outcome is awaited in the background.
        let outcome = replies.send(reply);
        tokio::spawn(async move {
            if let Err(e) = outcome.await {
                eprintln!("reply not sent: {e}");
            }
        });
    }
    conn.close().await
}
