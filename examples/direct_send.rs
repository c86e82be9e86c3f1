//! Sends with no broker, like Proton's direct_send.py: listens on `-a
//! [amqp://]HOST:PORT[/ADDRESS]` (default `localhost:5672/examples`), sends
//! `-m COUNT` (default 100) maps `{'sequence': i}` to the receiver of the
//! first connection, prints "all messages confirmed" and exits; any error
//! exits 1 after printing it.

use aqueduct::{types::Map, Error, ErrorKind, IncomingEndpoint, Message};
use futures::{StreamExt, TryStreamExt};

/// Splits optparse-style `-aX`, `--address=X` into option and value.
fn split(arg: &str) -> (&str, Option<String>) {
    match (arg.split_once('='), arg.get(..2), arg.get(2..)) {
        (Some((o, v)), _, _) if o.starts_with("--") => (o, Some(v.into())),
        (_, Some(o), Some(v)) if !v.is_empty() && !arg.starts_with("--") => (o, Some(v.into())),
        _ => (arg, None),
    }
}

fn usage(arg: &str) -> ! {
    eprintln!("usage: direct_send [-a URL] [-m COUNT]\ndirect_send: error: bad option {arg}");
    std::process::exit(2)
}

async fn run(url: &str, count: u64) -> Result<(), Error> {
    let mut listener = aqueduct::listen(url).await?;
    let closed = || Error::new(ErrorKind::Closed, "closed before a receiver attached");
    let conn = listener.next().await.ok_or_else(closed)?.accept()?;
    while let Some(endpoint) = conn.next_incoming().await {
        let sender = match endpoint {
            IncomingEndpoint::Link(link) if !link.is_sender() => link.accept_sender(None)?,
            _ => continue, // a session, or a link sending to us: refused as it drops
        };
        let message = |i: u64| {
            let body: Map = [("sequence", i as i64)].into_iter().collect();
            Message::builder().id(i).body(body).build()
        };
        futures::stream::iter(1..=count)
            .map(|i| sender.send(message(i)))
            .buffer_unordered(1024)
            .try_for_each(|outcome| async { outcome.into_result() })
            .await?;
        println!("all messages confirmed");
        return conn.close().await;
    }
    Err(conn.error().unwrap_or_else(closed))
}

#[tokio::main]
async fn main() {
    let (mut url, mut count) = (String::from("localhost:5672/examples"), 100);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (opt, value) = split(&arg);
        let value = value.or_else(|| args.next()).unwrap_or_else(|| usage(&arg));
        match opt {
            "-a" | "--address" => url = value,
            "-m" | "--messages" => count = value.parse().unwrap_or_else(|_| usage(&arg)),
            _ => usage(&arg),
        }
    }
    if let Err(e) = run(&url, count).await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
