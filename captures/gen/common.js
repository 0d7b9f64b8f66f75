// Log lines shared by the node peers: one JSON object per line on stdout, read by make_captures.py.
'use strict';
const crypto = require('crypto');

function logMessage(clientPort, sender, data) {
  const isText = typeof data === 'string';
  const raw = isText ? Buffer.from(data, 'utf8') : Buffer.from(data);
  console.log(JSON.stringify({
    event: 'message', client_port: clientPort, sender: sender, type: isText ? 'text' : 'binary',
    size: raw.length, sha256: crypto.createHash('sha256').update(raw).digest('hex'),
    text_prefix: isText ? Array.from(data).slice(0, 64).join('') : null,
  }));
}

function logConn(clientPort, facts) {
  console.log(JSON.stringify(Object.assign({ event: 'conn', client_port: clientPort }, facts)));
}

function bytes(n, seed) {
  const b = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) { x = (x * 1103515245 + 12345) >>> 0; b[i] = x >>> 24; }
  return b;
}

// The node servers' answer: "echo:" + text, binary as is, each reply logged.
function echoReplies(wss) {
  wss.on('connection', (ws, req) => {
    const cport = req.socket.remotePort;
    ws.on('message', (data, isBinary) => {
      const reply = isBinary ? Buffer.from(data) : 'echo:' + data.toString('utf8');
      ws.send(reply, { binary: isBinary });
      logMessage(cport, 'server', reply);
    });
  });
}

// Drive a node `ws` client: a ping at open, then the messages of `outbox` one per reply, then a close 1000
// `reason`; each message logged, and the connection's facts at the close (`moreFacts()` adds its own,
// e.g. TLS facts read at open).
function runClient(ws, port, outbox, pingData, reason, moreFacts = () => ({})) {
  let cport = null;
  let extensions = null;
  let more = {};
  ws.on('upgrade', (res) => { extensions = res.headers['sec-websocket-extensions'] || null; });
  const next = () => {
    const m = outbox.shift();
    if (m === undefined) { ws.close(1000, reason); return; }
    ws.send(m);
    logMessage(cport, 'client', m);
  };
  ws.on('open', () => { cport = ws._socket.localPort; more = moreFacts(); ws.ping(Buffer.from(pingData)); next(); });
  ws.on('message', next);
  ws.on('close', (code, why) => {
    logConn(cport, Object.assign({
      server_port: port, version: 13, draft: 'rfc6455', http_status: 101, handshake_ok: true,
      subprotocol: ws.protocol || null, extensions, compression: !!extensions,
      close_code_client: 1000, close_code_server: code, close_reason_client: reason,
      close_reason_server: why.toString('utf8'), close_status: 'clean', close_initiator: 'client',
    }, more));
    process.exit(0);
  });
  ws.on('error', (e) => { console.error(e); process.exit(1); });
}

module.exports = { logMessage, logConn, bytes, echoReplies, runClient };
