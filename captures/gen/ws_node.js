// node `ws` (v8) peer.  node ws_node.js server PORT   |   node ws_node.js client PORT
// The server echoes ("echo:" + text, binary as is) with permessage-deflate enabled; the client sends a
// few messages with compression offered, waits for each echo, then closes 1000 "node bye".
'use strict';
const WebSocket = require('ws');
const { logMessage, logConn, bytes } = require('./common');

const [mode, portArg] = process.argv.slice(2);
const port = Number(portArg);

if (mode === 'server') {
  const wss = new WebSocket.Server({ host: '127.0.0.1', port, perMessageDeflate: { threshold: 0 } },
    () => console.log('READY'));
  wss.on('connection', (ws, req) => {
    const cport = req.socket.remotePort;
    ws.on('message', (data, isBinary) => {
      const reply = isBinary ? Buffer.from(data) : 'echo:' + data.toString('utf8');
      ws.send(reply, { binary: isBinary });
      logMessage(cport, 'server', reply);
    });
  });
  process.on('SIGTERM', () => { wss.close(); process.exit(0); });
} else {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/node`, ['node.v1'], { perMessageDeflate: true });
  let cport = null;
  let extensions = null;
  const outbox = [
    'hello from node ws',
    JSON.stringify({ type: 'chat', user: 'node', text: 'node says hi '.repeat(20) }),
    bytes(4096, 7),
    'ünïcödé from node ✓',
    bytes(10, 3),
  ];
  ws.on('upgrade', (res) => { extensions = res.headers['sec-websocket-extensions'] || null; });
  const next = () => {
    const m = outbox.shift();
    if (m === undefined) { ws.close(1000, 'node bye'); return; }
    ws.send(m);
    logMessage(cport, 'client', m);
  };
  ws.on('open', () => { cport = ws._socket.localPort; ws.ping(Buffer.from('node ping')); next(); });
  ws.on('message', next);
  ws.on('close', (code, reason) => {
    logConn(cport, {
      server_port: port, version: 13, draft: 'rfc6455', http_status: 101, handshake_ok: true,
      subprotocol: ws.protocol || null, extensions, compression: !!extensions,
      close_code_client: 1000, close_code_server: code, close_reason_client: 'node bye',
      close_reason_server: reason.toString('utf8'), close_status: 'clean', close_initiator: 'client',
    });
    process.exit(0);
  });
  ws.on('error', (e) => { console.error(e); process.exit(1); });
}
