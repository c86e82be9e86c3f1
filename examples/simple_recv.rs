//! Receives messages from an address, like Proton's simple_recv.py:
//! `simple_recv [-a [amqp[s]://][USER:PASSWORD@]HOST:PORT/ADDRESS] [-m COUNT]`
//! (defaults `localhost:5672/examples` and 100; `-m 0` receives forever).
//! Prints each body as Python prints it, one per line, and accepts it; any
//! error exits 1 after printing it.

use aqueduct::{transport::Address, Error};
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
    eprintln!("usage: simple_recv [-a URL] [-m COUNT]\nsimple_recv: error: bad option {arg}");
    std::process::exit(2)
}

async fn run(url: &str, count: u64) -> Result<(), Error> {
    let address = url.parse::<Address>()?.address.unwrap_or_default();
    let conn = aqueduct::connect(url).await?;
    let mut receiver = conn.open_receiver(address).await?;
    let (mut received, mut out) = (0, BufWriter::new(std::io::stdout().lock()));
    // Output is buffered, and flushed whenever no delivery is waiting.
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
            receiver.close().await?;
            return conn.close().await;
        }
    }
    out.flush()?;
    Err(conn
        .error()
        .unwrap_or_else(|| Error::new(aqueduct::ErrorKind::Closed, "link closed")))
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
