#!/usr/bin/env python3
"""Close-handshake client on Python `websockets` (asyncio), a peer for the
ringws lifecycle tests.

Usage: py_close_client.py URL < sessions

stdin holds sessions: one message per line, as the hex of its UTF-8 text; an
empty line ends a session. For each session the client opens a connection to
URL (keepalive off), sends the messages in order, then reads until the
connection closes: it answers the server's Close the way `websockets` does
(echoing its code) and waits for the server to close TCP. Per session it
prints, one per line:

  message text|binary HEX      every message received, in order
  close CODE REASON_HEX FIRST  the Close received (`-` for none); FIRST is 1
                               when the server's Close came before ours
  error TEXT                   anything that went wrong
  end

Hex keeps every byte of a reason visible, so a test can compare them exactly.

Requires: pip install -r tools/interop/requirements.txt
"""

import asyncio
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed


async def run_session(url, messages):
    lines = []
    try:
        async with connect(
            url, ping_interval=None, close_timeout=10, max_size=None, compression=None
        ) as websocket:
            for message in messages:
                await websocket.send(message)
            try:
                async for message in websocket:
                    if isinstance(message, str):
                        lines.append(f"message text {message.encode('utf-8').hex()}")
                    else:
                        lines.append(f"message binary {message.hex()}")
            except ConnectionClosed:
                pass
            # Leaving the block waits for the server to close TCP.
        received = websocket.protocol.close_rcvd
        if received is None:
            lines.append("close - - -")
        else:
            first = 1 if websocket.protocol.close_rcvd_then_sent else 0
            reason = received.reason.encode("utf-8").hex() or "-"
            lines.append(f"close {received.code} {reason} {first}")
    except Exception as error:  # reported to the test, never hidden
        lines.append(f"error {type(error).__name__}: {error}")
    lines.append("end")
    return lines


def read_sessions(stream):
    sessions, current = [], []
    for line in stream:
        line = line.strip()
        if line:
            current.append(bytes.fromhex(line).decode("utf-8"))
        else:
            sessions.append(current)
            current = []
    if current:
        sessions.append(current)
    return sessions


async def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    url = sys.argv[1]
    for messages in read_sessions(sys.stdin):
        for line in await run_session(url, messages):
            print(line, flush=True)


if __name__ == "__main__":
    asyncio.run(main())
