#!/usr/bin/env node
// Echo server on Node `ws`, a peer for ringws tests and benchmarks.
//
// Listens on 127.0.0.1 (port 0 = any free port, or --port N), prints
// `PORT <n>` on stdout once listening, echoes every message with its type,
// and answers Close with the client's code (the library's default). Exits
// when stdin closes, so a test harness that dies takes the server with it.
//
// Requires: cd tools/interop && npm ci   (NODE_PATH may point elsewhere)
'use strict';

const path = require('path');

// With NODE_PATH set, `ws` comes from there and nowhere else, so a harness
// that names a module directory tests exactly that installation.
const wsModule = process.env.NODE_PATH
  ? path.resolve(process.env.NODE_PATH.split(path.delimiter)[0], 'ws')
  : 'ws';
const { WebSocketServer } = require(wsModule);

const portFlag = process.argv.indexOf('--port');
const port = portFlag >= 0 ? Number(process.argv[portFlag + 1]) : 0;
const host = '127.0.0.1';

const server = new WebSocketServer({
  host,
  port,
  perMessageDeflate: false,
  maxPayload: 64 * 1024 * 1024,
});

server.on('connection', (socket) => {
  socket.on('message', (data, isBinary) => {
    socket.send(data, { binary: isBinary });
  });
  socket.on('error', () => {});
});

server.on('listening', () => {
  process.stdout.write(`PORT ${server.address().port}\n`);
});

process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
