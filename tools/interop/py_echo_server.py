#!/usr/bin/env python3
"""Echo server on Python `websockets` (asyncio), a peer for ringws tests and
benchmarks.

Listens on 127.0.0.1 (port 0 = any free port, or --port), prints
`PORT <n>` on stdout once listening, echoes every message with its type, and
answers Close with the client's code (the library's default). Exits when
stdin closes, so a test harness that dies takes the server with it.

Faults, for testing how a client counts errors:
  --reject STATUS        refuse every upgrade with this HTTP status
  --close-after N        close each connection after echoing N messages,
  --close-code CODE      with this close code (default 1001)
  --corrupt              echo every message with its first byte changed

Requires: pip install -r tools/interop/requirements.txt
"""

import argparse
import asyncio
import sys

from websockets.asyncio.server import serve


def corrupted(message):
    if isinstance(message, str):
        return ("~" if message[:1] != "~" else "!") + message[1:]
    return bytes([message[0] ^ 0xFF]) + message[1:] if message else b"\x00"


def make_handler(args):
    async def echo(websocket):
        echoed = 0
        async for message in websocket:
            await websocket.send(corrupted(message) if args.corrupt else message)
            echoed += 1
            if args.close_after is not None and echoed >= args.close_after:
                await websocket.close(args.close_code)
                return

    return echo


def make_process_request(args):
    if args.reject is None:
        return None

    def reject(connection, request):
        return connection.respond(args.reject, "refused by test server\n")

    return reject


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--reject", type=int)
    parser.add_argument("--close-after", type=int)
    parser.add_argument("--close-code", type=int, default=1001)
    parser.add_argument("--corrupt", action="store_true")
    args = parser.parse_args()
    # No keepalive pings from the server and no message size cap beyond
    # 64 MiB: the load generator measures echoes, not the server's policies.
    async with serve(
        make_handler(args),
        args.host,
        args.port,
        ping_interval=None,
        max_size=64 * 1024 * 1024,
        compression=None,
        process_request=make_process_request(args),
    ) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"PORT {port}", flush=True)
        loop = asyncio.get_running_loop()
        # Runs until stdin reaches end of file.
        await loop.run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
