//! Sends messages to an address, like Proton's simple_send.py:
//! `simple_send [-a [amqp[s]://][USER:PASSWORD@]HOST:PORT/ADDRESS] [-m COUNT]`
//! (defaults `localhost:5672/examples` and 100). Bodies are maps
//! `{'sequence': i}` with message id i, from 1; the sends are pipelined.
//! Prints "all messages confirmed" once all are accepted, else the error
//! (exit 1).

use aqueduct::{transport::Address, types::Map, Error, Message};
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
    eprintln!("usage: simple_send [-a URL] [-m COUNT]\nsimple_send: error: bad option {arg}");
    std::process::exit(2)
}

async fn run(url: &str, count: u64) -> Result<(), Error> {
    let address = url.parse::<Address>()?.address.unwrap_or_default();
    let conn = aqueduct::connect(url).await?;
    let sender = conn.open_sender(address).await?;
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
    conn.close().await
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
