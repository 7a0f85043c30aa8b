//! Raw TCP clients from chosen loopback addresses.

use std::net::SocketAddr;

use tokio::net::{TcpSocket, TcpStream};

/// A TCP connection to the gateway from `source` (any 127.x address: Linux
/// routes the whole of 127/8 to loopback, so tests can be several clients).
pub async fn connect_from(source: &str, port: u16) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(format!("{source}:0").parse::<SocketAddr>().unwrap())
        .unwrap();
    socket
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .unwrap()
}
