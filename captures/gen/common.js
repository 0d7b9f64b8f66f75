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

module.exports = { logMessage, logConn, bytes };
