//! Request/response client, like Proton's client.py:
//! `client [-a [amqp[s]://][USER:PASSWORD@]HOST:PORT/ADDRESS] [REQUEST...]`
//! (default `localhost:5672/examples` and four lines of Jabberwocky). Sends
//! each request with reply-to set to a dynamic receiver's address, waits for
//! the response and prints `REQUEST => RESPONSE`; any error exits 1.

use aqueduct::{transport::Address, Error, ErrorKind, Message};
use futures::StreamExt;

const REQUESTS: [&str; 4] = [
    "Twas brillig, and the slithy toves",
    "Did gire and gymble in the wabe.",
    "All mimsy were the borogroves,",
    "And the mome raths outgrabe.",
];

async fn run(url: &str, requests: Vec<String>) -> Result<(), Error> {
    let address = url.parse::<Address>()?.address.unwrap_or_default();
    let conn = aqueduct::connect(url).await?;
    let sender = conn.open_sender(address).await?;
    let mut receiver = conn.open_dynamic_receiver().await?;
    let reply_to = receiver.address().unwrap_or_default().to_string();
    for request in requests {
        let message = Message::builder()
            .reply_to(&reply_to)
            .body(request.as_str());
        sender.send(message.build()).await?.into_result()?;
        let Some(response) = receiver.next().await else {
            let closed = Error::new(ErrorKind::Closed, "the receiver closed");
            return Err(conn.error().unwrap_or(closed));
        };
        println!("{request} => {}", response?.message()?.body());
    }
    conn.close().await
}

#[tokio::main]
async fn main() {
    let mut url = String::from("localhost:5672/examples");
    let mut requests = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-a" | "--address" => url = args.next().unwrap_or_default(),
            a if a.starts_with("--address=") => url = a["--address=".len()..].into(),
            a if a.starts_with("-a") => url = a[2..].into(),
            a if a.starts_with('-') && a != "-" => {
                eprintln!("usage: client [-a URL] [REQUEST...]\nclient: error: bad option {a}");
                std::process::exit(2)
            }
            _ => requests.push(arg),
        }
    }
    if requests.is_empty() {
        requests = REQUESTS.map(String::from).to_vec();
    }
    if let Err(e) = run(&url, requests).await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
