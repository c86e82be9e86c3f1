//! Receives with no broker, like Proton's direct_recv.py: listens on `-a
//! [amqp://]HOST:PORT[/ADDRESS]` (default `localhost:5672/examples`), prints
//! the body of each message that senders send (one connection and link at a
//! time), one per line, and after `-m COUNT` (default 100; 0 = forever)
//! closes the connection and exits; any error exits 1 after printing it.

use aqueduct::{Error, IncomingEndpoint, ReceiverOptions};
use futures::{FutureExt, StreamExt};
use std::io::{BufWriter, Write};

/// Splits optparse-style `-aX`, `--address=X` into option and value.
fn split(arg: &str) -> (&str, Option<String>) {
    match (arg.split_once('='), arg.get(..2), arg.get(2..)) {
        (Some((o, v)), _, _) if o.starts_with("--") => (o, Some(v.into())),
        (_, Some(o), Some(v)) if !v.is_empty() && !arg.starts_with("--") => (o, Some(v.into())),
        _ => (arg, None),
    }
}

fn usage(arg: &str) -> ! {
    eprintln!("usage: direct_recv [-a URL] [-m COUNT]\ndirect_recv: error: bad option {arg}");
    std::process::exit(2)
}

async fn run(url: &str, count: u64) -> Result<(), Error> {
    let mut listener = aqueduct::listen(url).await?;
    let (mut received, mut out) = (0, BufWriter::new(std::io::stdout().lock()));
    while let Some(incoming) = listener.next().await {
        let conn = incoming.accept()?;
        while let Some(endpoint) = conn.next_incoming().await {
            let mut receiver = match endpoint {
                IncomingEndpoint::Link(l) if l.is_sender() => {
                    l.accept_receiver(None, ReceiverOptions::default())?
                }
                _ => continue, // a session, or a link receiving from us: refused as it drops
            };
            // Output is buffered, and flushed whenever no delivery waits.
            while let Some(delivery) = match receiver.next().now_or_never() {
                Some(next) => next,
                None => {
                    out.flush()?;
                    receiver.next().await
                }
            } {
                writeln!(out, "{}", delivery?.message()?.body())?; // accepted as it drops
                received += 1;
                if received == count {
                    out.flush()?;
                    return conn.close().await;
                }
            }
            out.flush()?;
        }
    }
    Ok(())
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
