//! SMTP capacity against a spawned gateway (issue 10, item 7): one network
//! cannot take every connection slot, and a client that drips bytes to keep
//! its session alive is cut off once it falls below the minimum data rate.
//! (The shared buffer budget is tested at the session level, in
//! `channels/email/session.rs`, where the sessions' timing can be driven.)

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::app::TestApp;
use crate::support::email::{TIP_ADDRESS, spawn_email_app};

/// A connection from `local` (any 127.0.0.0/8 address is this machine) and
/// the first line the listener says.
async fn connect_from(app: &TestApp, local: &str) -> (TcpStream, String) {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(local.parse().unwrap(), 0))
        .unwrap();
    let mut stream = socket
        .connect(SocketAddr::from(([127, 0, 0, 1], app.smtp_port())))
        .await
        .unwrap();
    let mut line = Vec::new();
    let mut byte = [0_u8; 1];
    while line.last() != Some(&b'\n') {
        if stream.read(&mut byte).await.unwrap() == 0 {
            break;
        }
        line.push(byte[0]);
    }
    (stream, String::from_utf8(line).unwrap())
}

#[tokio::test]
async fn one_network_cannot_take_more_than_its_share_of_connections_whatever_its_addresses() {
    let app = spawn_email_app(|s| {
        s.email.max_connections_per_address = 10;
        s.email.max_connections_per_network = 2;
    })
    .await;
    let (_a, first) = connect_from(&app, "127.0.0.2").await;
    let (_b, second) = connect_from(&app, "127.0.0.3").await;
    assert!(first.starts_with("220 ") && second.starts_with("220 "));
    // A third address of the same /24.
    let (_c, third) = connect_from(&app, "127.0.0.4").await;
    assert_eq!(
        third,
        "421 4.7.0 Too many connections from your network, try again later\r\n"
    );
    // Another /24 is another network.
    let (_d, other) = connect_from(&app, "127.0.1.1").await;
    assert!(other.starts_with("220 "), "{other}");
}

#[tokio::test]
async fn a_client_dripping_bytes_is_cut_off_below_the_minimum_data_rate() {
    let app = spawn_email_app(|s| {
        s.email.idle_timeout = std::time::Duration::from_secs(1);
        s.email.min_data_rate_bytes = 1_000_000;
    })
    .await;
    let stream = TcpStream::connect(("127.0.0.1", app.smtp_port()))
        .await
        .unwrap();
    let (read, mut write) = stream.into_split();
    // A byte every 300 ms: never silent for the 1 s idle time, but far
    // below the rate once the 1 s grace is used up.
    let drip = tokio::spawn(async move {
        let commands = format!(
            "EHLO c\r\nMAIL FROM:<slow@example.net>\r\nRCPT TO:<{TIP_ADDRESS}>\r\nDATA\r\n"
        );
        write.write_all(commands.as_bytes()).await.unwrap();
        for byte in b"Subject: slow\r\n\r\n".iter().cycle().take(200) {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if write.write_all(&[*byte]).await.is_err() {
                return;
            }
        }
    });
    let mut lines = tokio::io::BufReader::new(read).lines();
    let mut last = String::new();
    while let Some(line) = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the listener answers within 30 s")
        .unwrap()
    {
        last = line;
    }
    drip.abort();
    assert_eq!(
        last,
        "421 4.4.2 Connection too slow (below the minimum data rate), closing connection"
    );
    assert!(app.alerts().await.is_empty());
    assert!(
        app.metrics
            .render()
            .contains("tipwire_smtp_sessions_total{outcome=\"too-slow\"} 1")
    );
}
