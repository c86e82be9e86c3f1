//! `Sender::detached`: a sender learns that its link or connection went
//! away even when it has nothing to send (what a broker needs to forget an
//! idle consumer).

use aqueduct::{Connection, ErrorKind, IncomingEndpoint, ListenOptions, Sender};
use futures::StreamExt;
use std::time::Duration;
use tokio::time::timeout;

const T: Duration = Duration::from_secs(20);

/// A client connection and the server's side of it.
async fn pair() -> (Connection, Connection) {
    let mut listener = aqueduct::listen(ListenOptions::new("amqp://127.0.0.1:0"))
        .await
        .unwrap();
    let url = format!("amqp://{}", listener.local_addr());
    let (client, server) = tokio::join!(aqueduct::connect(url.as_str()), async {
        listener.next().await.unwrap().accept().unwrap()
    });
    (client.unwrap(), server)
}

/// The server's sender for the next receiver the client attaches.
async fn accepted_sender(server: &Connection) -> Sender {
    loop {
        match timeout(T, server.next_incoming()).await.unwrap() {
            Some(IncomingEndpoint::Link(l)) => return l.accept_sender(None).unwrap(),
            Some(_) => continue,
            None => panic!("connection closed"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_sender_sees_the_peer_close_its_receiver() {
    let (client, server) = pair().await;
    let (receiver, sender) = tokio::join!(client.open_receiver("q"), accepted_sender(&server));
    let mut receiver = receiver.unwrap();
    let clone = sender.clone();
    // Still attached: nothing yet.
    assert!(timeout(Duration::from_millis(200), sender.detached())
        .await
        .is_err());
    receiver.close().await.unwrap();
    let e = timeout(T, sender.detached())
        .await
        .expect("the detach is reported");
    assert_eq!(e.kind(), &ErrorKind::LinkDetached, "{e}");
    // Every clone sees it, and again.
    let e2 = timeout(T, clone.detached()).await.unwrap();
    assert_eq!(e2.kind(), &ErrorKind::LinkDetached);
    assert_eq!(
        timeout(T, sender.detached()).await.unwrap().kind(),
        &ErrorKind::LinkDetached
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_sender_sees_the_connection_end() {
    let (client, server) = pair().await;
    let (receiver, sender) = tokio::join!(client.open_receiver("q"), accepted_sender(&server));
    let _receiver = receiver.unwrap();
    client.close().await.unwrap();
    let e = timeout(T, sender.detached())
        .await
        .expect("the connection's end is reported");
    assert_ne!(e.kind(), &ErrorKind::LinkDetached, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opened_sender_sees_the_peer_detach_it() {
    let (client, server) = pair().await;
    let (sender, link) = tokio::join!(client.open_sender("q"), async {
        loop {
            match timeout(T, server.next_incoming()).await.unwrap() {
                Some(IncomingEndpoint::Link(l)) => {
                    return l
                        .accept_receiver(None, aqueduct::ReceiverOptions::default())
                        .unwrap()
                }
                Some(_) => continue,
                None => panic!("connection closed"),
            }
        }
    });
    let sender = sender.unwrap();
    let mut link = link;
    link.close().await.unwrap();
    let e = timeout(T, sender.detached())
        .await
        .expect("the detach is reported");
    assert_eq!(e.kind(), &ErrorKind::LinkDetached, "{e}");
}
