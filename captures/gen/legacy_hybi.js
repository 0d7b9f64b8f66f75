// ws@0.4.32 (installed as "ws-legacy"): a server and a client speaking Sec-WebSocket-Version 8
// (hybi-08..12 framing) in one process.  node legacy_hybi.js PORT
'use strict';
const WebSocket = require('ws-legacy');
const { logMessage, logConn, bytes } = require('./common');

const port = Number(process.argv[2]);
const wss = new WebSocket.Server({ host: '127.0.0.1', port }, () => {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/legacy`, { protocolVersion: 8 });
  let cport = null;
  const outbox = ['hello hybi-08', bytes(300, 5), 'x'.repeat(200), 'last one'];
  const next = () => {
    const m = outbox.shift();
    if (m === undefined) { ws.close(1000, 'legacy bye'); return; }
    ws.send(m, { binary: typeof m !== 'string', mask: true });
    logMessage(cport, 'client', m);
  };
  ws.on('open', () => { cport = ws._socket.localPort; next(); });
  ws.on('message', next);
  ws.on('close', (code, reason) => {
    logConn(cport, {
      server_port: port, version: 8, draft: 'hybi-08', http_status: 101, handshake_ok: true,
      subprotocol: null, extensions: null, compression: false,
      close_code_client: 1000, close_code_server: code, close_reason_client: 'legacy bye',
      close_reason_server: reason === undefined ? null : String(reason),
      close_status: 'clean', close_initiator: 'client',
    });
    setTimeout(() => { wss.close(); process.exit(0); }, 300);
  });
});
wss.on('connection', (ws) => {
  const cport = ws._socket.remotePort;
  ws.on('message', (data, flags) => {
    const reply = flags && flags.binary ? data : 'echo: ' + data;
    ws.send(reply, { binary: !!(flags && flags.binary) });
    logMessage(cport, 'server', reply);
  });
});
