// RFC 8441 WebSockets over node's http2 module (h2c), both ends written here:
//   node h2_node.js server PORT [--no-connect]   http2 server; --no-connect: SETTINGS without
//                                                enableConnectProtocol (it answers nothing to a CONNECT)
//   node h2_node.js client PORT                  http2 client: two WebSockets on one connection
// The WebSocket frames are made and parsed here (RFC 6455: the client masks). Log lines as common.js's,
// with h2_stream_id (node knows the stream ids on both sides); the client also prints per stream the
// DATA bytes it wrote and read, which the generator checks against tshark.
'use strict';
const http2 = require('http2');
const crypto = require('crypto');
const { bytes } = require('./common');

function sha(raw) { return crypto.createHash('sha256').update(raw).digest('hex'); }

function logMessage(clientPort, sid, sender, data) {
  const isText = typeof data === 'string';
  const raw = isText ? Buffer.from(data, 'utf8') : Buffer.from(data);
  console.log(JSON.stringify({
    event: 'message', client_port: clientPort, h2_stream_id: sid, sender, type: isText ? 'text' : 'binary',
    size: raw.length, sha256: sha(raw), text_prefix: isText ? Array.from(data).slice(0, 64).join('') : null,
  }));
}

// One frame: fin, opcode, payload; masked with a random key when `mask`.
function frame(opcode, payload, { fin = true, mask = false } = {}) {
  const n = payload.length;
  const ext = n < 126 ? 0 : n < 65536 ? 2 : 8;
  const head = Buffer.alloc(2 + ext + (mask ? 4 : 0));
  head[0] = (fin ? 0x80 : 0) | opcode;
  head[1] = (mask ? 0x80 : 0) | (ext === 0 ? n : ext === 2 ? 126 : 127);
  if (ext === 2) head.writeUInt16BE(n, 2);
  if (ext === 8) head.writeBigUInt64BE(BigInt(n), 2);
  if (!mask) return Buffer.concat([head, payload]);
  const key = crypto.randomBytes(4);
  key.copy(head, 2 + ext);
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i] ^= key[i & 3];
  return Buffer.concat([head, body]);
}

function closePayload(code, reason) {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(code);
  return Buffer.concat([b, Buffer.from(reason, 'utf8')]);
}

// A frame parser over a stream's 'data' chunks: onFrame(fin, opcode, payload), payload unmasked.
function parser(onFrame) {
  let buf = Buffer.alloc(0);
  return (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    for (;;) {
      if (buf.length < 2) return;
      const masked = (buf[1] & 0x80) !== 0;
      let n = buf[1] & 0x7f;
      let off = 2;
      if (n === 126) { if (buf.length < 4) return; n = buf.readUInt16BE(2); off = 4; }
      else if (n === 127) { if (buf.length < 10) return; n = Number(buf.readBigUInt64BE(2)); off = 10; }
      const keyOff = off;
      if (masked) off += 4;
      if (buf.length < off + n) return;
      const payload = Buffer.from(buf.subarray(off, off + n));
      if (masked) for (let i = 0; i < n; i++) payload[i] ^= buf[keyOff + (i & 3)];
      const fin = (buf[0] & 0x80) !== 0;
      const opcode = buf[0] & 0x0f;
      buf = buf.subarray(off + n);
      onFrame(fin, opcode, payload);
    }
  };
}

// Messages out of frames (continuations joined); control frames passed to onControl.
function assembler(onMessage, onControl) {
  let parts = null;
  let type = null;
  return parser((fin, opcode, payload) => {
    if (opcode >= 8) { onControl(opcode, payload); return; }
    if (opcode !== 0) { type = opcode; parts = []; }
    parts.push(payload);
    if (fin) {
      const all = Buffer.concat(parts);
      onMessage(type === 1 ? all.toString('utf8') : all);
    }
  });
}

// ------------------------------------------------------------------------------------------------
// server: /chat echoes (text "echo:" + text, binary reversed) and answers the client's close;
// /feed sends three messages, then closes 1001 'going away'; others 404.

function server(port, connect) {
  const srv = http2.createServer(connect ? { settings: { enableConnectProtocol: true } } : {});
  srv.on('stream', (stream, headers) => {
    const cport = stream.session.socket.remotePort;
    const sid = stream.id;
    if (headers[':method'] !== 'CONNECT' || headers[':protocol'] !== 'websocket') {
      stream.respond({ ':status': 200, 'content-type': 'text/plain' });
      stream.end('hello over HTTP/2\n');
      return;
    }
    const path = headers[':path'];
    if (path !== '/chat' && path !== '/feed') {
      stream.respond({ ':status': 404 });
      stream.end();
      return;
    }
    const offered = (headers['sec-websocket-protocol'] || '').split(',').map((s) => s.trim());
    const answer = { ':status': 200 };
    if (offered.includes('chat.v1')) answer['sec-websocket-protocol'] = 'chat.v1';
    stream.respond(answer);
    let closed = false;
    const send = (data) => {
      const isText = typeof data === 'string';
      stream.write(frame(isText ? 1 : 2, isText ? Buffer.from(data, 'utf8') : data));
      logMessage(cport, sid, 'server', data);
    };
    stream.on('data', assembler(
      (msg) => { if (path === '/chat') send(typeof msg === 'string' ? 'echo:' + msg : Buffer.from(msg).reverse()); },
      (opcode, payload) => {
        if (opcode === 9) stream.write(frame(10, payload));
        if (opcode === 8) {
          if (!closed) { closed = true; stream.write(frame(8, payload)); }
          stream.end();
        }
      },
    ));
    stream.on('error', () => {});
    if (path === '/feed') {
      send('feed item 1');
      send(bytes(2000, 7));
      send(JSON.stringify({ feed: 3, items: Array.from({ length: 20 }, (_, i) => `item ${i}`) }));
      closed = true;
      stream.write(frame(8, closePayload(1001, 'going away')));
    }
  });
  srv.listen(port, '127.0.0.1', () => console.log('READY'));
  process.on('SIGTERM', () => { srv.close(); process.exit(0); });
}

// ------------------------------------------------------------------------------------------------
// client: /chat (subprotocols chat.v1, chat.v2; texts, a 70,000-byte binary, a text in three
// fragments, a ping; closes 1000 'node bye') and /feed (reads, answers the server's 1001 close).

function client(port) {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on('error', (e) => { console.error(e); process.exit(1); });
  const streams = [];
  let cport = null;
  session.on('connect', () => { cport = session.socket.localPort; });
  session.once('remoteSettings', (settings) => {
    if (!settings.enableConnectProtocol) { console.error('no enableConnectProtocol'); process.exit(1); }
    streams.push(openWs('/chat', ['chat.v1', 'chat.v2'], chat));
    streams.push(openWs('/feed', [], () => {}));
  });

  function openWs(path, protocols, onOpen) {
    const headers = {
      ':method': 'CONNECT', ':protocol': 'websocket', ':scheme': 'http', ':path': path,
      ':authority': `localhost:${port}`, 'sec-websocket-version': '13', origin: `http://localhost:${port}`,
    };
    if (protocols.length) headers['sec-websocket-protocol'] = protocols.join(', ');
    const req = session.request(headers, { endStream: false });
    const st = {
      req, path, status: null, subprotocol: null, sent: 0, rcvd: 0, received: [], closeSent: null,
      closeRcvd: null, initiator: null, ended: false, waiting: null,
    };
    st.write = (buf) => { st.sent += buf.length; req.write(buf); };
    st.send = (data, opts) => {
      const isText = typeof data === 'string';
      st.write(frame(isText ? 1 : 2, isText ? Buffer.from(data, 'utf8') : data, { mask: true, ...opts }));
      logMessage(cport, req.id, 'client', data);
    };
    const parse = assembler(
      (msg) => { st.received.push(msg); if (st.waiting) { const w = st.waiting; st.waiting = null; w(); } },
      (opcode, payload) => {
        if (opcode !== 8) return;
        st.closeRcvd = [payload.readUInt16BE(0), payload.subarray(2).toString('utf8')];
        if (!st.closeSent) {
          st.initiator = 'server';
          st.closeSent = st.closeRcvd;
          st.write(frame(8, payload, { mask: true }));
        }
        req.end();
      },
    );
    req.on('response', (h) => {
      st.status = h[':status'];
      st.subprotocol = h['sec-websocket-protocol'] || null;
      onOpen(st);
    });
    req.on('data', (chunk) => { st.rcvd += chunk.length; parse(chunk); });
    req.on('close', () => { st.ended = true; if (streams.every((s) => s.ended)) finish(); });
    return st;
  }

  function chat(st) {
    const steps = [
      () => st.send('hello over an HTTP/2 stream'),
      () => st.send(JSON.stringify({ user: 'node', text: 'extended CONNECT', n: 1 })),
      () => st.send(bytes(70000, 3)),
      () => {
        const parts = ['fragmented ', 'text in ', 'three frames'];
        st.write(frame(1, Buffer.from(parts[0]), { fin: false, mask: true }));
        st.write(frame(0, Buffer.from(parts[1]), { fin: false, mask: true }));
        st.write(frame(0, Buffer.from(parts[2]), { mask: true }));
        logMessage(cport, st.req.id, 'client', parts.join(''));
      },
    ];
    const next = () => {
      const step = steps.shift();
      if (step) { st.waiting = next; step(); return; }
      st.write(frame(9, Buffer.from('node ping'), { mask: true }));
      st.closeSent = [1000, 'node bye'];
      st.initiator = 'client';
      st.write(frame(8, closePayload(1000, 'node bye'), { mask: true }));
    };
    next();
  }

  function finish() {
    for (const st of streams) {
      const [cc, cr] = st.closeSent || [null, null];
      const [sc, sr] = st.closeRcvd || [null, null];
      console.log(JSON.stringify({
        event: 'stream', client_port: cport, h2_stream_id: st.req.id, path: st.path, server_port: port,
        transport: 'h2c', version: 13, draft: 'rfc6455', http_status: st.status, handshake_ok: st.status === 200,
        subprotocol: st.subprotocol, extensions: null, compression: false, close_code_client: cc,
        close_code_server: sc, close_reason_client: cr, close_reason_server: sr,
        close_status: cc !== null && sc !== null ? 'clean' : 'half-closed', close_initiator: st.initiator,
        data_sent: st.sent, data_rcvd: st.rcvd, reset: null,
      }));
    }
    console.log(JSON.stringify({ event: 'tcp', client_port: cport, transport: 'h2c' }));
    session.close(() => process.exit(0));
  }
}

const [role, port, flag] = process.argv.slice(2);
if (role === 'server') server(Number(port), flag !== '--no-connect');
else client(Number(port));
