#!/usr/bin/env python3
"""Holding client on Python `websockets` (asyncio), a peer for the ringws
lifecycle tests: it opens one connection and keeps it, answering the
server's keepalive Pings (the library does that on its own) and reading and
discarding messages. Its own keepalive is off, so only the server's timers
act.

Usage: py_hold_client.py URL

Prints `OPEN` once the handshake has completed, then `CLOSED <code>` if the
server closes the connection. Exits when stdin closes, so a test harness that
dies takes the client with it.

Requires: pip install -r tools/interop/requirements.txt
"""

import asyncio
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed


async def hold(url):
    async with connect(
        url, ping_interval=None, close_timeout=1, max_size=None, compression=None
    ) as websocket:
        print("OPEN", flush=True)
        try:
            async for _ in websocket:
                pass
        except ConnectionClosed:
            pass
        print(f"CLOSED {websocket.close_code}", flush=True)


async def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    loop = asyncio.get_running_loop()
    client = asyncio.ensure_future(hold(sys.argv[1]))
    stdin_closed = loop.run_in_executor(None, sys.stdin.read)
    await asyncio.wait([client, stdin_closed], return_when=asyncio.FIRST_COMPLETED)
    if client.done():
        client.result()
        await stdin_closed
    else:
        client.cancel()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
