// hixie-75 / hixie-76 (and any version websocket-driver speaks) echo server on the npm
// `websocket-driver` package.  node hixie_server.js PORT
// Every text message is answered with "echo: " + text; hixie-76 closing frames are answered by the driver.
'use strict';
const http = require('http');
const websocket = require('websocket-driver');
const { logMessage } = require('./common');

const port = Number(process.argv[2]);
const server = http.createServer((req, res) => { res.writeHead(404); res.end('not here'); });
server.on('upgrade', (req, socket, head) => {
  if (!websocket.isWebSocket(req)) { socket.end(); return; }
  const driver = websocket.http(req);
  const cport = socket.remotePort;
  driver.io.write(head);
  socket.pipe(driver.io).pipe(socket);
  driver.messages.on('data', (msg) => {
    const reply = 'echo: ' + msg;
    driver.text(reply);
    logMessage(cport, 'server', reply);
  });
  driver.on('close', () => socket.end());
  socket.on('error', () => {});
  driver.start();
});
server.listen(port, '127.0.0.1', () => console.log('READY'));
process.on('SIGTERM', () => process.exit(0));
