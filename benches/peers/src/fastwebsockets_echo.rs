//! Echo server on fastwebsockets (hyper 1 upgrade, tokio current-thread
//! runtime): every Text or Binary message goes back with its type; Close is
//! answered by the library (auto close) and the connection dropped, so the
//! server closes TCP first. The shape of fastwebsockets' own echo example.

use fastwebsockets::{upgrade, FragmentCollector, OpCode, WebSocketError};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

async fn echo(upgrade: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = FragmentCollector::new(upgrade.await?);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => return Ok(()),
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
}

async fn upgrade_request(
    mut request: Request<Incoming>,
) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, upgrade) = upgrade::upgrade(&mut request)?;
    tokio::spawn(async move {
        let _ = echo(upgrade).await;
    });
    Ok(response)
}

fn main() -> std::process::ExitCode {
    let addr = match ringws_bench_peers::listen_addr() {
        Ok(addr) => addr,
        Err(message) => {
            eprintln!("fastwebsockets-echo: {message}");
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
                let connection = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(upgrade_request))
                    .with_upgrades();
                let _ = connection.await;
            });
        }
    })
}
