//! Hello World, like Proton's helloworld.py, but with no outside broker:
//! a tiny in-process peer listens on a free port and hands each message it
//! receives on "examples" back to whoever receives from "examples".

use aqueduct::{IncomingEndpoint, Message, ReceiverOptions};
use futures::StreamExt;
use tokio::sync::mpsc;

#[tokio::main]
async fn main() -> Result<(), aqueduct::Error> {
    let mut listener = aqueduct::listen("amqp://127.0.0.1:0").await?;
    let url = format!("amqp://{}/examples", listener.local_addr());
    tokio::spawn(async move {
        let (queue_tx, queue_rx) = mpsc::unbounded_channel::<Message>();
        let mut queue_rx = Some(queue_rx);
        let conn = listener.next().await?.accept().ok()?;
        while let Some(endpoint) = conn.next_incoming().await {
            let IncomingEndpoint::Link(link) = endpoint else {
                continue; // sessions are accepted by themselves
            };
            if link.is_sender() {
                let mut receiver = link
                    .accept_receiver(None, ReceiverOptions::default())
                    .ok()?;
                let queue_tx = queue_tx.clone();
                tokio::spawn(async move {
                    while let Some(Ok(delivery)) = receiver.next().await {
                        // A message that does not decode is rejected.
                        if let Ok(message) = delivery.into_message() {
                            let _ = queue_tx.send(message);
                        }
                    }
                });
            } else {
                let sender = link.accept_sender(None).ok()?;
                let mut queue_rx = queue_rx.take()?;
                tokio::spawn(async move {
                    while let Some(m) = queue_rx.recv().await {
                        let _ = sender.send(m).await;
                    }
                });
            }
        }
        Some(())
    });

    let conn = aqueduct::connect(url.as_str()).await?;
    let mut receiver = conn.open_receiver("examples").await?;
    let sender = conn.open_sender("examples").await?;
    sender.send(Message::from("Hello World!")).await?;
    if let Some(delivery) = receiver.next().await {
        println!("{}", delivery?.message()?.body());
    }
    conn.close().await
}
