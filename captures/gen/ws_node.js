// node `ws` (v8) peer.  node ws_node.js server PORT   |   node ws_node.js client PORT
// The server echoes ("echo:" + text, binary as is) with permessage-deflate enabled; the client sends a
// few messages with compression offered, waits for each echo, then closes 1000 "node bye".
'use strict';
const WebSocket = require('ws');
const { bytes, echoReplies, runClient } = require('./common');

const [mode, portArg] = process.argv.slice(2);
const port = Number(portArg);

if (mode === 'server') {
  const wss = new WebSocket.Server({ host: '127.0.0.1', port, perMessageDeflate: { threshold: 0 } },
    () => console.log('READY'));
  echoReplies(wss);
  process.on('SIGTERM', () => { wss.close(); process.exit(0); });
} else {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/node`, ['node.v1'], { perMessageDeflate: true });
  runClient(ws, port, [
    'hello from node ws',
    JSON.stringify({ type: 'chat', user: 'node', text: 'node says hi '.repeat(20) }),
    bytes(4096, 7),
    'ünïcödé from node ✓',
    bytes(10, 3),
  ], 'node ping', 'node bye');
}
