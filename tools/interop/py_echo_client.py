#!/usr/bin/env python3
"""Echo client on Python `websockets` (sync API), a peer for ringws tests.

Usage: py_echo_client.py ws://127.0.0.1:PORT/

Sends text and binary messages of several sizes (every frame-length
encoding: 7-bit, 16-bit and 64-bit), checks that each comes back with the
same type and bytes, closes with 1000 and waits for the server's Close.
Prints `OK <messages>` and exits 0, or prints what went wrong on stderr and
exits 1. Every wait is bounded (10 s).

Requires: pip install -r tools/interop/requirements.txt
"""

import sys

from websockets.sync.client import connect

TIMEOUT = 10


def messages():
    text = "héllo, wörld ✓ 𝄞"
    yield text
    yield bytes(range(256))
    yield (text * 200)[:1000]
    yield bytes((i * 31) % 251 for i in range(70_000))
    yield "x" * 70_000
    yield b""


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    count = 0
    with connect(
        sys.argv[1], open_timeout=TIMEOUT, close_timeout=TIMEOUT, max_size=None
    ) as websocket:
        for message in messages():
            websocket.send(message)
            echoed = websocket.recv(timeout=TIMEOUT)
            if type(echoed) is not type(message) or echoed != message:
                kind = "text" if isinstance(message, str) else "binary"
                print(
                    f"echo mismatch: sent {kind} of {len(message)}, "
                    f"got {type(echoed).__name__} of {len(echoed)}",
                    file=sys.stderr,
                )
                return 1
            count += 1
        websocket.close(1000, "done")
        if websocket.close_code != 1000:
            print(f"the server's Close carried {websocket.close_code}", file=sys.stderr)
            return 1
    print(f"OK {count}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
