//! `fe2o3-acceptor HOST PORT MECHANISM USER PASSWORD`: listens with
//! fe2o3-amqp's acceptor offering one SCRAM mechanism (SCRAM-SHA-1,
//! SCRAM-SHA-256 or SCRAM-SHA-512) for one user; PORT 0 picks a free port.
//! Prints "listening on PORT" once ready. On each connection: a link the
//! client attaches as a sender gets its messages accepted (each printed as
//! "received BODY"); a link attached as a receiver gets one message,
//! "hello from fe2o3". Runs until killed.

use fe2o3_amqp::acceptor::{
    ConnectionAcceptor, LinkAcceptor, LinkEndpoint, ListenerConnectionHandle,
    ListenerSessionHandle, SessionAcceptor,
};
use fe2o3_amqp::auth::scram::{ScramAuthenticator, ScramVersion};
use fe2o3_amqp::acceptor::scram::SingleScramCredential;
use fe2o3_amqp::types::primitives::Value;
use fe2o3_amqp::{Receiver, Sender};
use std::io::Write;
use std::sync::Arc;
use tokio::net::TcpListener;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 5 {
        eprintln!("usage: fe2o3-acceptor HOST PORT MECHANISM USER PASSWORD");
        std::process::exit(2);
    }
    let version = match args[2].as_str() {
        "SCRAM-SHA-1" => ScramVersion::Sha1,
        "SCRAM-SHA-256" => ScramVersion::Sha256,
        "SCRAM-SHA-512" => ScramVersion::Sha512,
        m => {
            eprintln!("unsupported mechanism {m}");
            std::process::exit(2);
        }
    };
    let credential = SingleScramCredential::new(&args[3], &args[4], version).expect("credential");
    let acceptor = ConnectionAcceptor::builder()
        .container_id("fe2o3-acceptor")
        .sasl_acceptor(ScramAuthenticator::new(Arc::new(credential)))
        .build();
    let tcp = TcpListener::bind((args[0].as_str(), args[1].parse::<u16>().expect("port")))
        .await
        .expect("bind");
    println!("listening on {}", tcp.local_addr().unwrap().port());
    std::io::stdout().flush().unwrap();
    while let Ok((stream, _)) = tcp.accept().await {
        match acceptor.accept(stream).await {
            Ok(conn) => {
                tokio::spawn(connection(conn));
            }
            Err(e) => {
                println!("refused: {e:?}");
                std::io::stdout().flush().unwrap();
            }
        }
    }
}

async fn connection(mut conn: ListenerConnectionHandle) {
    let sessions = SessionAcceptor::default();
    while let Ok(session) = sessions.accept(&mut conn).await {
        tokio::spawn(session_links(session));
    }
    let _ = conn.on_close().await;
}

async fn session_links(mut session: ListenerSessionHandle) {
    let links = LinkAcceptor::new();
    while let Ok(link) = links.accept(&mut session).await {
        match link {
            LinkEndpoint::Sender(s) => tokio::spawn(send_one(s)),
            LinkEndpoint::Receiver(r) => tokio::spawn(receive(r)),
        };
    }
    let _ = session.on_end().await;
}

async fn send_one(mut sender: Sender) {
    let _ = sender.send("hello from fe2o3").await;
    let _ = sender.close().await;
}

async fn receive(mut receiver: Receiver) {
    while let Ok(d) = receiver.recv::<Value>().await {
        println!("received {:?}", d.body());
        std::io::stdout().flush().unwrap();
        if receiver.accept(&d).await.is_err() {
            break;
        }
    }
    let _ = receiver.close().await;
}
