#!/usr/bin/env node
// Echo client on Node `ws`, a peer for ringws tests.
//
// Usage: node node_echo_client.js ws://127.0.0.1:PORT/
//
// Sends text and binary messages of several sizes (every frame-length
// encoding: 7-bit, 16-bit and 64-bit), checks that each comes back with the
// same type and bytes, closes with 1000 and waits for the server's Close.
// Prints `OK <messages>` and exits 0, or prints what went wrong on stderr and
// exits 1. The whole run is bounded (15 s).
//
// Requires: cd tools/interop && npm ci   (NODE_PATH may point elsewhere)
'use strict';

const path = require('path');

// With NODE_PATH set, `ws` comes from there and nowhere else, so a harness
// that names a module directory tests exactly that installation.
const wsModule = process.env.NODE_PATH
  ? path.resolve(process.env.NODE_PATH.split(path.delimiter)[0], 'ws')
  : 'ws';
const WebSocket = require(wsModule);

const url = process.argv[2];
if (!url) {
  process.stderr.write('usage: node node_echo_client.js ws://host:port/\n');
  process.exit(2);
}

const text = 'héllo, wörld ✓ 𝄞';
const binary = Buffer.alloc(70000);
for (let i = 0; i < binary.length; i += 1) binary[i] = (i * 31) % 251;
const messages = [
  { data: text, binary: false },
  { data: Buffer.from([...Array(256).keys()]), binary: true },
  { data: text.repeat(200).slice(0, 1000), binary: false },
  { data: binary, binary: true },
  { data: 'x'.repeat(70000), binary: false },
  { data: Buffer.alloc(0), binary: true },
];

const fail = (message) => {
  process.stderr.write(`${message}\n`);
  process.exit(1);
};
setTimeout(() => fail('timed out after 15 s'), 15000).unref();

const socket = new WebSocket(url, { perMessageDeflate: false, maxPayload: 0 });
let next = 0;

const sendNext = () => {
  const message = messages[next];
  socket.send(message.data, { binary: message.binary });
};

socket.on('open', sendNext);
socket.on('message', (data, isBinary) => {
  const sent = messages[next];
  const expected = sent.binary ? sent.data : Buffer.from(sent.data, 'utf8');
  if (isBinary !== sent.binary || !Buffer.from(data).equals(expected)) {
    fail(
      `echo mismatch on message ${next}: sent ${sent.binary ? 'binary' : 'text'} of ` +
        `${expected.length}, got ${isBinary ? 'binary' : 'text'} of ${data.length}`,
    );
  }
  next += 1;
  if (next < messages.length) {
    sendNext();
  } else {
    socket.close(1000, 'done');
  }
});
socket.on('close', (code) => {
  if (next < messages.length) fail(`closed early with ${code}`);
  if (code !== 1000) fail(`the server's Close carried ${code}, not 1000`);
  process.stdout.write(`OK ${next}\n`);
  process.exit(0);
});
socket.on('error', (error) => fail(`socket error: ${error.message}`));
