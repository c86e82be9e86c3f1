//! Send throughput: `send_bench [-a URL] [-m COUNT] [-s SIZE]` (defaults
//! `localhost:5672/examples`, 100000, 100) sends COUNT pipelined messages
//! with a SIZE-byte data body and prints messages per second, timed from
//! the first send to the last outcome. Any error exits 1 after printing it.

use aqueduct::{transport::Address, Error, Message};
use futures::{StreamExt, TryStreamExt};
use std::time::Instant;

async fn run(url: &str, count: u64, size: usize) -> Result<(), Error> {
    let address = url.parse::<Address>()?.address.unwrap_or_default();
    let conn = aqueduct::connect(url).await?;
    let sender = conn.open_sender(address).await?;
    let body = bytes::Bytes::from(vec![b'x'; size]);
    let start = Instant::now();
    futures::stream::iter(1..=count)
        .map(|i| sender.send(Message::builder().id(i).body(body.clone()).build()))
        .buffer_unordered(4096)
        .try_for_each(|outcome| async { outcome.into_result() })
        .await?;
    let secs = start.elapsed().as_secs_f64();
    let rate = count as f64 / secs;
    println!("{count} messages of {size} bytes in {secs:.3} s: {rate:.0} msgs/s");
    conn.close().await
}

fn usage() -> ! {
    eprintln!("usage: send_bench [-a URL] [-m COUNT] [-s SIZE]");
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let (mut url, mut count, mut size) = (String::from("localhost:5672/examples"), 100_000, 100);
    let mut args = std::env::args().skip(1);
    while let (Some(opt), value) = (args.next(), args.next()) {
        let value = value.unwrap_or_default();
        match opt.as_str() {
            "-a" => url = value,
            "-m" => count = value.parse().unwrap_or_else(|_| usage()),
            "-s" => size = value.parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    if let Err(e) = run(&url, count, size).await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
