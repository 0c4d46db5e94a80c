//! Echo server on tokio-tungstenite (tokio current-thread runtime): every
//! Text or Binary message goes back with its type; tungstenite answers
//! Close itself, the stream then ends and the connection is dropped, so the
//! server closes TCP first.

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};

async fn echo(stream: TcpStream) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    let mut ws = tokio_tungstenite::accept_async(stream).await?;
    while let Some(message) = ws.next().await {
        let message = message?;
        if message.is_binary() || message.is_text() {
            ws.send(message).await?;
        }
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let addr = match ringws_bench_peers::listen_addr() {
        Ok(addr) => addr,
        Err(message) => {
            eprintln!("tungstenite-echo: {message}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let listener = TcpListener::bind(addr).await.expect("bind");
        ringws_bench_peers::announce_and_watch_stdin(listener.local_addr().expect("local address"));
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let _ = echo(stream).await;
            });
        }
    })
}
