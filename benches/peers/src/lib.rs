//! What the peer echo servers share: the command line (`--port N`, default
//! 0 = any free port), the `PORT <n>` line the harness waits for, and exiting
//! when standard input closes, so a harness that dies takes its servers
//! with it.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr};

/// The address to listen on: 127.0.0.1 and the `--port` argument.
pub fn listen_addr() -> Result<SocketAddr, String> {
    let mut args = std::env::args().skip(1);
    let mut port = 0u16;
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--port" => {
                let value = args.next().ok_or("--port needs a value")?;
                port = value.parse().map_err(|error| format!("--port: {error}"))?;
            }
            other => return Err(format!("unknown argument {other}; usage: [--port N]")),
        }
    }
    Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
}

/// Prints `PORT <n>` (the harness's ready signal) and starts a thread that
/// exits the process when standard input reaches its end.
pub fn announce_and_watch_stdin(addr: SocketAddr) {
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "PORT {}", addr.port());
    let _ = stdout.flush();
    std::thread::spawn(|| {
        let mut sink = [0u8; 256];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
}
