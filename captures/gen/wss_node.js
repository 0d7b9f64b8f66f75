// node `ws` (v8) over TLS.  node wss_node.js server PORT CERT KEY   |   node wss_node.js client PORT CERT
// The server (an https server with a ws server on it, permessage-deflate) echoes ("echo:" + text, binary as
// is); the client offers compression and subprotocol node.v1, sends a few messages, pings, closes 1000
// "node tls bye" and logs the TLS facts it saw. Run the client under `node --tls-keylog=FILE` (or
// NODE_OPTIONS=--tls-keylog=FILE) for the key log.
'use strict';
const fs = require('fs');
const https = require('https');
const WebSocket = require('ws');
const { bytes, echoReplies, runClient } = require('./common');

const [mode, portArg, certPath, keyPath] = process.argv.slice(2);
const port = Number(portArg);
const cert = fs.readFileSync(certPath);

if (mode === 'server') {
  const server = https.createServer({ cert, key: fs.readFileSync(keyPath), ALPNProtocols: ['http/1.1'] });
  const wss = new WebSocket.Server({ server, perMessageDeflate: { threshold: 0 } });
  echoReplies(wss);
  server.listen(port, '127.0.0.1', () => console.log('READY'));
  process.on('SIGTERM', () => { wss.close(); server.close(); process.exit(0); });
} else {
  const ws = new WebSocket(`wss://127.0.0.1:${port}/node-tls`, ['node.v1'], {
    perMessageDeflate: true, ca: cert, servername: 'localhost', ALPNProtocols: ['http/1.1'],
  });
  const tlsFacts = () => {
    const s = ws._socket;
    return {
      transport: 'tls', tls_version: s.getProtocol().replace('TLSv', 'TLS '),
      tls_cipher: s.getCipher().standardName, sni: 'localhost', alpn: s.alpnProtocol || null, decrypted: true,
    };
  };
  runClient(ws, port, [
    'hello from node ws over TLS',
    JSON.stringify({ type: 'chat', user: 'node', text: 'node says hi over TLS '.repeat(20) }),
    bytes(4096, 9),
    'ünïcödé from node ✓ (wss)',
    bytes(10, 4),
  ], 'node tls ping', 'node tls bye', tlsFacts);
}
