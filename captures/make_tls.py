"""The wss:// scenarios of the capture corpus: WebSocket over TLS with the key logs to decrypt it.

    python captures/make_captures.py --only wss_tls13,wss_tls12      (make_captures.py registers these)

Each scenario records real TLS traffic on loopback with a self-signed certificate made here with
`cryptography`, and writes captures/<name>.keylog (NSS key log written by the client's OpenSSL, or by
node's --tls-keylog, or by Chromium's --ssl-key-log-file) beside the capture. The Python peers run as
subprocesses of this file (`make_tls.py peer ...`) because OpenSSL reads its TLS 1.3 cipher suites and
groups only from a configuration file (OPENSSL_CONF, section system_default) that Python's ssl cannot
override; they print what they sent as JSON lines, as the node peers do. The expected files are the
senders' logs plus the TLS facts the client knew (version, IANA cipher suite name, SNI, ALPN), checked
against tshark run with the same key log. Peers and tcpdump run in a network namespace of their own
whose loopback has an Ethernet MTU, so that TLS records span TCP segments as on a real network.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import datetime
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from make_captures import (  # noqa: E402
    CHROMIUM_BINARY,
    CHROMIUM_MESSAGES,
    CHROMIUM_PAGE,
    CONN_KEYS,
    FRAME_KEYS,
    Log,
    NodePeer,
    Peer,
    _chat_json,
    cross_check,
    payload_binary,
    run_chromium,
    tcpdump,
    ws_conn_facts,
    ws_server,
)
from tshark_frames import tshark_fields, tshark_frames  # noqa: E402

TLS_CONN_KEYS = ("transport", "tls_version", "tls_cipher", "sni", "alpn", "decrypted")
SNI = "localhost"
ALPN = "http/1.1"

# OpenSSL's names of the TLS 1.2 suites used here -> IANA names (TLS 1.3 suites have one name).
IANA = {
    "ECDHE-RSA-AES128-GCM-SHA256": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "ECDHE-RSA-AES256-GCM-SHA384": "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "ECDHE-RSA-CHACHA20-POLY1305": "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "ECDHE-RSA-AES128-SHA": "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "ECDHE-RSA-AES256-SHA384": "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
    "AES128-SHA256": "TLS_RSA_WITH_AES_128_CBC_SHA256",
}
TLS13_SUITES = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")
TLS13_CCM = "TLS_AES_128_CCM_SHA256"


def tls_version_name(openssl_version: str | None) -> str | None:
    """OpenSSL's "TLSv1.3" spelled as the analyzer does: "TLS 1.3"."""
    return openssl_version.replace("TLSv", "TLS ") if openssl_version else None


# --------------------------------------------------------------------------------------------
# certificate and OpenSSL configuration


def make_cert(folder: Path) -> tuple[Path, Path]:
    """A self-signed RSA certificate for localhost / 127.0.0.1 (RSA: the ECDHE-RSA suites need it)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SNI)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(SNI), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def openssl_conf(folder: Path, name: str, **settings: str) -> Path:
    """An OpenSSL config whose system_default section holds `settings` (Ciphersuites=..., Groups=...)."""
    lines = [
        "openssl_conf = default_conf",
        "[default_conf]",
        "ssl_conf = ssl_sect",
        "[ssl_sect]",
        "system_default = system_default_sect",
        "[system_default_sect]",
        *(f"{k} = {v}" for k, v in settings.items()),
    ]
    path = folder / f"{name}.cnf"
    path.write_text("\n".join(lines) + "\n")
    return path


# --------------------------------------------------------------------------------------------
# the Python peers (run as `make_tls.py peer server|client ...` in a subprocess)


def emit(rec: dict) -> None:
    print(json.dumps(rec), flush=True)


class PrintLog(Log):
    """A Log that prints each message as a JSON line for the parent's Log.record."""

    def sent(self, client_port: int, sender: str, data: str | bytes) -> None:
        super().sent(client_port, sender, data)
        emit({"event": "message", **self.messages.pop()})


def _server_peer(args: argparse.Namespace) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    ctx.set_alpn_protocols([ALPN])
    if args.no_ticket:
        ctx.options |= ssl.OP_NO_TICKET
    if args.tls12_ciphers:
        ctx.set_ciphers(args.tls12_ciphers)

    async def main() -> None:
        server = await ws_server(args.port, PrintLog(), compression="deflate", ssl=ctx)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        print("READY", flush=True)
        await stop.wait()
        server.close()
        await server.wait_closed()

    asyncio.run(main())


def _libssl() -> ctypes.CDLL:
    """The libssl that Python's _ssl module is linked against (found in this process' maps)."""
    with open("/proc/self/maps") as f:
        paths = {line.split()[-1] for line in f if "libssl.so" in line}
    if not paths:
        raise RuntimeError("libssl is not loaded")
    return ctypes.CDLL(paths.pop())


def key_update(sock: ssl.SSLSocket) -> None:
    """SSL_key_update(ssl, SSL_KEY_UPDATE_REQUESTED): sent with the next write.

    Python has no API for it; the SSL* is the second pointer after PyObject_HEAD in CPython's
    PySSLSocket (Modules/_ssl.c: PyObject *Socket; SSL *ssl;), checked with SSL_version."""
    lib = _libssl()
    lib.SSL_version.argtypes = [ctypes.c_void_p]
    lib.SSL_key_update.argtypes = [ctypes.c_void_p, ctypes.c_int]
    sslobj = sock._sslobj  # type: ignore[attr-defined]
    ptr = ctypes.c_void_p.from_address(id(sslobj) + 3 * ctypes.sizeof(ctypes.c_void_p)).value
    if ptr is None or lib.SSL_version(ptr) != 0x0304:
        raise RuntimeError("could not find the SSL* of the socket (or not TLS 1.3)")
    if lib.SSL_key_update(ptr, 1) != 1:
        raise RuntimeError("SSL_key_update failed")


def client_messages(i: int, big: int) -> list[str | bytes]:
    """What a client sends; `big`: also a binary message of that size (over 16 KiB: several records)."""
    out: list[str | bytes] = [f"hello over TLS #{i}", _chat_json(i, "tls"), payload_binary(3000, i)]
    if big:
        out.append(payload_binary(big, 100 + i))
    return [*out, "x" * 200]


def _client_peer(args: argparse.Namespace) -> None:
    from websockets.sync.client import connect

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(args.cert)
    ctx.keylog_filename = args.keylog
    ctx.set_alpn_protocols([ALPN])
    if args.tls12_ciphers:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(args.tls12_ciphers)
    if args.no_etm:
        ctx.options |= 0x80000  # SSL_OP_NO_ENCRYPT_THEN_MAC: MAC-then-encrypt CBC records
    log = PrintLog()
    session = None
    for i in range(args.connections):
        raw = socket.create_connection(("127.0.0.1", args.port), timeout=10)
        sock = ctx.wrap_socket(raw, server_hostname=SNI, session=session)
        cport = sock.getsockname()[1]
        cipher = sock.cipher()
        tls_facts = {
            "transport": "tls",
            "tls_version": tls_version_name(sock.version()),
            "tls_cipher": IANA.get(cipher[0], cipher[0]) if cipher else None,
            "sni": SNI,
            "alpn": sock.selected_alpn_protocol(),
            "decrypted": True,
        }
        resumed = sock.session_reused
        with connect(
            f"ws://{SNI}:{args.port}/tls",
            sock=sock,
            compression="deflate",
            ping_interval=None,
            max_size=None,
            close_timeout=5,
            proxy=None,
        ) as ws:
            for n, data in enumerate(client_messages(i, args.big)):
                if args.key_update and n in (1, 3):
                    key_update(sock)
                ws.send(data)
                log.sent(cport, "client", data)
                ws.recv()
            ws.ping(b"tls ping").wait(5)
            session = sock.session  # TLS 1.3: the server's NewSessionTicket has come by now
            ws.close(1000, "tls bye")
        emit(
            {
                "event": "conn",
                "client_port": cport,
                **ws_conn_facts(ws, args.port),
                **tls_facts,
                "resumed": resumed,
            }
        )
        sock.close()


def peer_main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("role", choices=("server", "client"))
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key")
    ap.add_argument("--keylog")
    ap.add_argument("--tls12-ciphers")
    ap.add_argument("--no-etm", action="store_true")
    ap.add_argument("--no-ticket", action="store_true")
    ap.add_argument("--connections", type=int, default=1)
    ap.add_argument("--key-update", action="store_true")
    ap.add_argument("--big", type=int, default=0)
    args = ap.parse_args(argv)
    (_server_peer if args.role == "server" else _client_peer)(args)


@contextlib.contextmanager
def network_namespace() -> Iterator[tuple[str, ...]]:
    """A private network namespace whose loopback looks like Ethernet (MTU 1500, GSO packets no
    larger than one segment), for the block; yields the command prefix that runs a program in it.

    On the host's loopback (MTU 65536, GSO) tcpdump sees a 16 KiB TLS record as one packet; on a
    real network it spans TCP segments, which the analyzer must reassemble. The namespace is ours
    alone: the host's loopback and its other users are not touched."""
    name = f"wss-capture-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        prefix = ("ip", "netns", "exec", name)
        subprocess.run([*prefix, "ip", "link", "set", "lo", "mtu", "1500", "up"], check=True)
        subprocess.run([*prefix, "ip", "link", "set", "lo", "gso_max_size", "1448"], check=True)
        yield prefix
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def py_peer(log: Log, *args: str, conf: Path | None = None, prefix: tuple[str, ...] = ()) -> Peer:
    """This file run as a peer subprocess, under the OpenSSL config `conf` when given."""
    env = {k: v for k, v in os.environ.items() if k != "SSLKEYLOGFILE"}
    if conf is not None:
        env["OPENSSL_CONF"] = str(conf)
    return Peer(log, [*prefix, sys.executable, str(Path(__file__).resolve()), "peer", *args], env)


# --------------------------------------------------------------------------------------------
# a scenario run: certificate, server, clients, recording, expected file


class Run:
    """One scenario's working state: the certificate and OpenSSL configs in a temp folder, the Log,
    the capture and key log paths (captures/<name>.pcap, captures/<name>.keylog)."""

    def __init__(
        self,
        name: str,
        out_dir: Path,
        tmp: Path,
        port: int,
        suffix: str = ".pcap",
        netns: tuple[str, ...] = (),
    ) -> None:
        self.netns = netns  # the command prefix of the network namespace the peers and tcpdump run in
        self.name = name
        self.port = port
        self.log = Log()
        self.tmp = tmp
        self.cert, self.key = make_cert(tmp)
        self.path = out_dir / f"{name}{suffix}"
        self.keylog = out_dir / f"{name}.keylog"
        self.keylog.unlink(missing_ok=True)

    def conf(self, label: str, **settings: str) -> Path:
        return openssl_conf(self.tmp, label, **settings)

    @contextlib.contextmanager
    def server(self, *extra: str, conf: Path | None = None, port: int | None = None) -> Iterator[None]:
        args = ["server", "--port", str(port or self.port), "--cert", str(self.cert), "--key", str(self.key)]
        peer = py_peer(self.log, *args, *extra, conf=conf, prefix=self.netns)
        try:
            peer.wait_ready()
            yield
            time.sleep(0.3)
        finally:
            peer.stop()

    def client(
        self, *extra: str, conf: Path | None = None, keylog: Path | None = None, port: int | None = None
    ) -> None:
        args = ["client", "--port", str(port or self.port), "--cert", str(self.cert)]
        args += ["--keylog", str(keylog or self.keylog), *extra]
        py_peer(self.log, *args, conf=conf, prefix=self.netns).wait(60)

    def record(self, body: Callable[[], None], port_filter: str = "", path: Path | None = None) -> None:
        """Run `body` while tcpdump records (`port_filter`, default the scenario's port)."""
        with tcpdump(path or self.path, port_filter or f"tcp port {self.port}", prefix=self.netns):
            body()

    def exchange(
        self, *client_args: str, server_conf: Path | None = None, keylog: Path | None = None
    ) -> None:
        """The common body: one server, one client connection."""
        with self.server(conf=server_conf):
            self.client(*client_args, keylog=keylog)

    def finish(self, description: str, **kw: Any) -> dict:
        kw.setdefault("keylog", self.keylog)
        return finish_tls(self.name, self.path, description, self.log, **kw)


# --------------------------------------------------------------------------------------------
# expected files


def keylog_lines(path: Path) -> list[str]:
    return [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("#")]


def finish_tls(
    name: str,
    path: Path,
    description: str,
    log: Log,
    *,
    keylog: Path | None,
    expected_name: str | None = None,
    problems: list[dict] | None = None,
    notes: str = "",
    frames: bool = True,
    reference: tuple[list[dict], str] | None = None,
) -> dict:
    """Write <expected_name or name>.expected.json: the senders' logs, the TLS facts the clients knew,
    and tshark's frames decrypted with the key log (None: the secrets embedded in the pcapng); with
    `frames` false, tshark must list none, or fewer than `reference`: (frames, where they come from),
    stored instead. Every TCP connection of the capture with a ClientHello must be one the programs
    logged."""
    conns = [
        {k: c[k] for k in (*CONN_KEYS, *TLS_CONN_KEYS) if k in c}
        for c in sorted(log.conns.values(), key=lambda c: c["client_port"])
    ]
    server_ports = {c["server_port"] for c in conns}
    hellos = {
        int(r[0]) for r in tshark_fields(path, server_ports, "tls.handshake.type == 1", ["tcp.srcport"])
    }
    if hellos != {c["client_port"] for c in conns}:
        raise RuntimeError(f"{name}: ClientHellos from ports {sorted(hellos)}, logged {sorted(log.conns)}")
    tf = tshark_frames(path, server_ports, tls=True, keylog=keylog)
    ports = ",".join(str(p) for p in sorted(server_ports))
    how = (
        f"-o tls.keylog_file:{keylog.name if keylog else '(secrets in the pcapng)'} "
        f"-d tcp.port=={ports},tls -d tls.port=={ports},http: tshark looks for TLS and for HTTP inside "
        "it only on ports it knows"
    )
    expected: dict = {
        "capture": path.name,
        "description": description,
        "generator": f"make_tls.py {name} (via make_captures.py)",
        "tshark_dissects": frames,
        "tshark_notes": (notes + "; " if notes else "") + how,
        "tls": True,
        "connections": conns,
        "messages": log.messages,
    }
    if keylog is not None:
        keylog.chmod(0o644)  # Chromium writes its key log 0600
        expected["analyze_options"] = {"keylog": keylog.name}
    if problems:
        expected["problems"] = problems
    if frames:
        errors = cross_check(conns, log.messages, tf)
        if not tf:
            errors.append("tshark decrypted no WebSocket frame")
        if errors:
            raise RuntimeError(f"{name}: senders' logs and tshark disagree:\n  " + "\n  ".join(errors))
        expected["frames"] = [{k: f[k] for k in FRAME_KEYS} for f in tf]
    elif reference is not None:  # tshark lists fewer frames than there are: the reference is elsewhere
        ref, source = reference
        if not len(tf) < len(ref):
            raise RuntimeError(f"{name}: tshark decrypted {len(tf)} frames, expected fewer than {len(ref)}")
        errors = cross_check(conns, log.messages, ref)
        if errors:
            raise RuntimeError(
                f"{name}: senders' logs and the reference frames disagree:\n  " + "\n  ".join(errors)
            )
        expected["frames"] = [{k: f[k] for k in FRAME_KEYS} for f in ref]
        expected["frames_source"] = source
    elif tf:
        raise RuntimeError(f"{name}: tshark decrypted {len(tf)} frames, none expected")
    out = path.with_name((expected_name or name) + ".expected.json")
    out.write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n")
    return expected


Scenario = Callable[[Path, Path, tuple[str, ...]], dict]


def scenario_registry(registry: dict[str, Callable[[Path], dict]],
                      tmp_prefix: str) -> Callable[[Scenario], Scenario]:
    """A decorator that registers fn(out_dir, tmp, netns) in `registry` as the scenario named after
    it: tmp a fresh temp folder (named `tmp_prefix`…), netns the command prefix of a fresh network
    namespace (see network_namespace). make_h2.py registers its scenarios with one of its own."""

    def scenario(fn: Scenario) -> Scenario:
        def run(out_dir: Path) -> dict:
            with tempfile.TemporaryDirectory(prefix=tmp_prefix) as tmp, network_namespace() as netns:
                return fn(out_dir, Path(tmp), netns)

        registry[fn.__name__.removeprefix("_")] = run
        return fn

    return scenario


SCENARIOS: dict[str, Callable[[Path], dict]] = {}
scenario = scenario_registry(SCENARIOS, "wss-")


EXCHANGE = (
    "text, JSON and binary echoed with permessage-deflate, a ping, client closes 1000 'tls bye'; ALPN "
    "http/1.1, SNI localhost; recorded in a network namespace whose loopback has an Ethernet MTU (1500), "
    "so TLS records span TCP segments"
)

# --------------------------------------------------------------------------------------------
# scenarios: python websockets


@scenario
def _wss_tls13(out_dir: Path, tmp: Path, netns: tuple[str, ...]) -> dict:
    run = Run("wss_tls13", out_dir, tmp, 9401, netns=netns)
    suites = list(TLS13_SUITES)

    def body() -> None:
        with run.server(conf=run.conf("server", Ciphersuites=":".join((*TLS13_SUITES, TLS13_CCM)))):
            for n, suite in enumerate(TLS13_SUITES):
                run.client(*(["--big", "20000"] if n == 0 else []), conf=run.conf(suite, Ciphersuites=suite))
            with contextlib.suppress(RuntimeError):  # AES-CCM when this OpenSSL has it
                run.client(conf=run.conf(TLS13_CCM, Ciphersuites=TLS13_CCM))
                suites.append(TLS13_CCM)

    run.record(body)
    got = sorted(c["tls_cipher"] for c in run.log.conns.values())
    if got != sorted(suites):
        raise RuntimeError(f"wss_tls13: suites negotiated {got}, wanted {suites}")
    return run.finish(
        "python websockets 17 server and client (sync client over an ssl socket) over TLS 1.3, one "
        f"connection per AEAD ({', '.join(suites)}; OpenSSL's TLS 1.3 suites chosen with an OPENSSL_CONF "
        f"system_default Ciphersuites line): {EXCHANGE}; the first connection also sends a 20,000-byte "
        "binary message (2 TLS records each way); key log written by the client"
    )


TLS12_CIPHERS = [  # (OpenSSL name, MAC-then-encrypt)
    ("ECDHE-RSA-AES128-GCM-SHA256", False),
    ("ECDHE-RSA-AES256-GCM-SHA384", False),
    ("ECDHE-RSA-CHACHA20-POLY1305", False),
    ("ECDHE-RSA-AES128-SHA", False),  # CBC, encrypt-then-MAC (OpenSSL's default)
    ("ECDHE-RSA-AES256-SHA384", True),  # CBC, MAC-then-encrypt
    ("AES128-SHA256", True),  # RSA key exchange, CBC, MAC-then-encrypt
]


TLS12_BIG = ("ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-SHA384")  # also a 20,000-byte message


@scenario
def _wss_tls12(out_dir: Path, tmp: Path, netns: tuple[str, ...]) -> dict:
    run = Run("wss_tls12", out_dir, tmp, 9402, netns=netns)

    def body() -> None:
        # Python's default server list leaves out SHA-1 MACs and RSA key exchange: OpenSSL's DEFAULT has them
        with run.server("--tls12-ciphers", "DEFAULT"):
            for cipher, mte in TLS12_CIPHERS:
                big = ["--big", "20000"] if cipher in TLS12_BIG else []
                run.client("--tls12-ciphers", cipher, *(["--no-etm"] if mte else []), *big)

    run.record(body)
    # encrypt_then_mac (extension 22) in the ServerHello exactly for the CBC suites that were not MtE
    hello = tshark_fields(run.path, {run.port}, "tls.handshake.type == 2", ["tls.handshake.extension.type"])
    etm = [("22" in r[0].split(",")) for r in hello]  # in capture order: the clients ran one by one
    want = ["GCM" not in c and "POLY" not in c and not mte for c, mte in TLS12_CIPHERS]
    if etm != want:
        raise RuntimeError(f"wss_tls12: encrypt_then_mac per connection {etm}, expected {want}")
    return run.finish(
        "python websockets 17 over TLS 1.2 (client maximum_version TLSv1_2), one connection per suite: "
        "ECDHE-RSA with AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305, AES-128-CBC-SHA (encrypt-then-MAC), "
        "AES-256-CBC-SHA384 (MAC-then-encrypt: SSL_OP_NO_ENCRYPT_THEN_MAC), and RSA key exchange "
        f"AES-128-CBC-SHA256 (MAC-then-encrypt): {EXCHANGE}; the AES-128-GCM and AES-256-CBC-SHA384 "
        "connections also send a 20,000-byte binary message (2 TLS records each way); key log written by "
        "the client"
    )


@scenario
def _wss_tls12_resumed(out_dir: Path, tmp: Path, netns: tuple[str, ...]) -> dict:
    run = Run("wss_tls12_resumed", out_dir, tmp, 9403, netns=netns)
    ticket_port = 9404

    def body() -> None:
        with run.server("--no-ticket"), run.server(port=ticket_port):
            run.client("--tls12-ciphers", "ECDHE-RSA-AES128-GCM-SHA256", "--connections", "2")
            run.client(
                "--tls12-ciphers", "ECDHE-RSA-AES256-GCM-SHA384", "--connections", "2", port=ticket_port
            )

    run.record(body, f"tcp port {run.port} or tcp port {ticket_port}")
    conns = sorted(run.log.conns.values(), key=lambda c: c["client_port"])
    if sorted(c.pop("resumed") for c in conns) != [False, False, True, True]:
        raise RuntimeError("wss_tls12_resumed: the second connections were not resumed")
    tickets = tshark_fields(run.path, {run.port, ticket_port}, "tls.handshake.type == 4", ["tcp.srcport"])
    if [r[0] for r in tickets] != [str(ticket_port)]:
        raise RuntimeError(
            f"wss_tls12_resumed: NewSessionTicket from {tickets}, expected one from {ticket_port}"
        )
    # the full key log has 4 CLIENT_RANDOM lines (OpenSSL logs resumed sessions too): keep the
    # first of each pair
    lines = keylog_lines(run.keylog)
    if len(lines) != 4:
        raise RuntimeError(f"wss_tls12_resumed: {len(lines)} key log lines, expected 4")
    first = out_dir / "wss_tls12_resumed.first-only.keylog"
    first.write_text(lines[0] + "\n" + lines[2] + "\n")
    description = (
        "python websockets 17 over TLS 1.2, two servers: on 9403 session-id resumption only "
        "(OP_NO_TICKET), on 9404 session tickets; on each a first connection then a resumed one (python "
        "ssl session= on the second wrap_socket). ECDHE-RSA-AES128-GCM-SHA256 on 9403, "
        f"ECDHE-RSA-AES256-GCM-SHA384 on 9404: {EXCHANGE}"
    )
    run.finish(description + "; full key log")
    return run.finish(
        description + "; key log with only the first connections' CLIENT_RANDOM lines: the resumed "
        "ones are decrypted with the master secret of the session they resume, found in the capture",
        keylog=first,
        expected_name="wss_tls12_resumed_first_only",
    )


@scenario
def _wss_tls13_resumed(out_dir: Path, tmp: Path, netns: tuple[str, ...]) -> dict:
    run = Run("wss_tls13_resumed", out_dir, tmp, 9411, netns=netns)
    run.record(lambda: run.exchange("--connections", "2"))
    conns = sorted(run.log.conns.values(), key=lambda c: c["client_port"])
    if sorted(c.pop("resumed") for c in conns) != [False, True]:
        raise RuntimeError("wss_tls13_resumed: the second connection was not resumed")
    # the resumed ClientHello offers a PSK (extension 41) and the ServerHello accepts it
    psk = tshark_fields(run.path, {run.port}, "tls.handshake.extension.type == 41", ["tls.handshake.type"])
    if sorted(r[0] for r in psk) != ["1", "2"]:
        raise RuntimeError(f"wss_tls13_resumed: pre_shared_key in handshake types {psk}, expected 1 and 2")
    return run.finish(
        "TLS 1.3 session resumption: a python websockets 17 client connects, keeps the session of the "
        "server's NewSessionTicket and connects again with it (python ssl session=): the second "
        "handshake is PSK with (EC)DHE, no certificate; "
        f"{EXCHANGE}; the key log has both connections' secrets (TLS 1.3 logs each handshake's own)"
    )


# RFC 8446 4.1.3: a ServerHello with this random is a HelloRetryRequest
HRR_RANDOM = "cf:21:ad:74:e5:9a:61:11:be:1d:8c:02:1e:65:b8:91:c2:a2:11:16:7a:bb:8c:5e:07:9e:09:e2:c8:a8:33:9c"


@scenario
def _wss_hrr(out_dir: Path, tmp: Path, netns: tuple[str, ...]) -> dict:
    run = Run("wss_hrr", out_dir, tmp, 9405, netns=netns)
    run.record(lambda: run.exchange(server_conf=run.conf("p256", Groups="P-256")))
    if not tshark_fields(run.path, {run.port}, f"tls.handshake.random == {HRR_RANDOM}", ["frame.number"]):
        raise RuntimeError("wss_hrr: no HelloRetryRequest in the capture")
    return run.finish(
        "TLS 1.3 HelloRetryRequest: the python websockets 17 server's OpenSSL accepts only P-256 "
        "(OPENSSL_CONF Groups = P-256) while the client sends an X25519 key share (its default), so "
        f"the server asks again and the client sends a second ClientHello with a P-256 share; {EXCHANGE}"
    )


@scenario
def _wss_keyupdate(out_dir: Path, tmp: Path, netns: tuple[str, ...]) -> dict:
    run = Run("wss_keyupdate", out_dir, tmp, 9406, netns=netns)
    run.record(lambda: run.exchange("--key-update"))
    updates = tshark_fields(
        run.path, {run.port}, "tls.handshake.type == 24", ["tcp.srcport"], keylog=run.keylog
    )
    if sorted(int(r[0]) == run.port for r in updates) != [False, False, True, True]:
        raise RuntimeError(f"wss_keyupdate: KeyUpdate messages from ports {updates}, expected 2 each way")
    return run.finish(
        "TLS 1.3 KeyUpdate: the python websockets 17 client calls OpenSSL's SSL_key_update(ssl, "
        "SSL_KEY_UPDATE_REQUESTED) (through ctypes) before its 2nd and 4th messages, so each side's "
        "traffic keys change twice mid-conversation (the server answers each with its own KeyUpdate); "
        f"TLS_AES_256_GCM_SHA384 (OpenSSL's default choice); {EXCHANGE}; the key log has only the "
        "*_TRAFFIC_SECRET_0 lines: later keys come from the key schedule"
    )


@scenario
def _wss_injected(out_dir: Path, tmp: Path, netns: tuple[str, ...]) -> dict:
    run = Run("wss_injected", out_dir, tmp, 9407, suffix=".pcapng", netns=netns)
    raw = out_dir / "wss_injected.tmp.pcap"
    keylog = tmp / "injected.keylog"
    try:
        run.record(lambda: run.exchange(keylog=keylog), path=raw)
        subprocess.run(["editcap", "--inject-secrets", f"tls,{keylog}", str(raw), str(run.path)], check=True)
    finally:
        raw.unlink(missing_ok=True)
    return run.finish(
        "pcapng with the TLS key log embedded as a Decryption Secrets Block (editcap --inject-secrets "
        f"tls,KEYLOG): python websockets 17 over TLS 1.3, {EXCHANGE}; no key log file is needed",
        keylog=None,
    )


@scenario
def _wss_wrong_key(out_dir: Path, tmp: Path, netns: tuple[str, ...]) -> dict:
    run = Run("wss_wrong_key", out_dir, tmp, 9408, netns=netns)
    right, other = tmp / "right.keylog", tmp / "other.keylog"
    run.record(lambda: run.exchange(keylog=right))
    (port,) = run.log.conns  # the recorded connection
    if not tshark_frames(run.path, {run.port}, tls=True, keylog=right):
        raise RuntimeError("wss_wrong_key: tshark decrypts nothing even with the right key log")
    run.exchange(keylog=other)  # another run, not recorded: its secrets, the recorded client random
    recorded = {ln.split()[0]: ln.split()[1] for ln in keylog_lines(right)}
    wrong = [
        f"{label} {recorded[label]} {secret}"
        for label, _cr, secret in (ln.split() for ln in keylog_lines(other))
        if label in recorded
    ]
    if len(wrong) != len(recorded):
        raise RuntimeError("wss_wrong_key: the two runs logged different labels")
    run.keylog.write_text("\n".join(wrong) + "\n")
    conn = run.log.conns[port]
    clear = ("client_port", "server_port", "transport", "tls_version", "tls_cipher", "sni")
    run.log.conns = {port: {k: conn[k] for k in clear} | {"decrypted": False}}
    run.log.messages = []
    return run.finish(
        "one python websockets 17 connection over TLS 1.3 (text, JSON, binary echoed, close 1000) with a "
        "key log from ANOTHER run: the recorded client random with the secrets of a second, unrecorded "
        "connection. Nothing can be decrypted: no frames, no messages, tls-decrypt-failed problems; the "
        "connection is still listed (version, suite and SNI are in the clear; ALPN is encrypted in 1.3)",
        problems=[{"client_port": port, "kind": "tls-decrypt-failed"}],
        notes="tshark with this key log lists no WebSocket frame (checked by the generator; with the right "
        "key log it lists them)",
        frames=False,
    )


def _drop_message_segment(run: Run, recorded: Path, keylog: Path) -> tuple[int, int, list[dict]]:
    """Delete from `recorded` (into run.path) the TCP segment that carries, alone, the TLS record of
    the client's 4th message; return its frame number, its client port, and tshark's frames of the
    recording without that one (renumbered as in the capture written)."""
    frames = tshark_frames(recorded, {run.port}, tls=True, keylog=keylog)
    data = [f for f in frames if f["sender"] == "client" and f["opcode"] in (1, 2)]
    victim = data[3]["frame_no"]
    row = tshark_fields(recorded, {run.port}, f"frame.number == {victim}", ["tcp.len", "tls.record.length"])
    tcp_len, records = int(row[0][0]), row[0][1].split(",")
    if len(records) != 1 or tcp_len != int(records[0]) + 5:
        raise RuntimeError(f"wss_tls_gap: frame {victim} is not one whole TLS record ({row})")
    subprocess.run(["editcap", str(recorded), str(run.path), str(victim)], check=True)
    kept = [
        {**f, "frame_no": f["frame_no"] - (f["frame_no"] > victim)} for f in frames if f["frame_no"] != victim
    ]
    return victim, data[3]["client_port"], kept


@scenario
def _wss_tls_gap(out_dir: Path, tmp: Path, netns: tuple[str, ...]) -> dict:
    run = Run("wss_tls_gap", out_dir, tmp, 9412, netns=netns)
    recorded = tmp / "recorded.pcap"
    run.record(lambda: run.exchange(), path=recorded)
    victim, port, kept = _drop_message_segment(run, recorded, run.keylog)
    lost = [m for m in run.log.messages if m["sender"] == "client"][3]
    run.log.messages.remove(lost)
    return run.finish(
        "a TCP gap inside TLS 1.3: one python websockets 17 connection (as wss_tls13, default suite) "
        f"whose packet {victim} of the recording, the client's 4th message ({lost['size']} bytes of "
        f"{lost['type']}) alone in one TLS record and one TCP segment, was removed afterwards with "
        "editcap (a real loss cannot be forced on loopback). The TLS record sequence number goes on at "
        "the next record: the analyzer must resynchronise there, say so (tcp-gap, tls-gap) and decode "
        "every other message; the lost one is left out of the expected messages",
        problems=[{"client_port": port, "kind": "tcp-gap"}, {"client_port": port, "kind": "tls-gap"}],
        notes="tshark 4.0 does not resynchronise TLS decryption after the lost record: it lists only the "
        "frames before it in that direction (checked by the generator)",
        frames=False,
        reference=(
            kept,
            "tshark on the recording before the segment was removed, less the lost frame, frame numbers "
            "shifted down by one after it",
        ),
    )


# --------------------------------------------------------------------------------------------
# scenarios: node ws over TLS, headless Chromium


@scenario
def _wss_node(out_dir: Path, tmp: Path, netns: tuple[str, ...]) -> dict:
    run = Run("wss_node", out_dir, tmp, 9409, netns=netns)

    def body() -> None:
        server = NodePeer(
            run.log, "wss_node.js", "server", str(run.port), str(run.cert), str(run.key), prefix=netns
        )
        try:
            server.wait_ready()
            env = dict(os.environ, NODE_OPTIONS=f"--tls-keylog={run.keylog}")
            client = NodePeer(
                run.log, "wss_node.js", "client", str(run.port), str(run.cert), env=env, prefix=netns
            )
            client.wait(30)
            time.sleep(0.3)
        finally:
            server.stop()

    run.record(body)
    return run.finish(
        "node `ws` 8 server and client over https/TLS (node 20's OpenSSL, TLS 1.3 default suite), "
        "permessage-deflate, subprotocol node.v1, ALPN http/1.1, SNI localhost: texts, JSON and binary "
        "echoed, a ping, client closes 1000 'node tls bye'; key log written by the client's node "
        "--tls-keylog (given in NODE_OPTIONS)"
    )


CHROMIUM_HOST = "wss-chromium.test"  # mapped to 127.0.0.1 by --host-resolver-rules, sent as SNI


def _server_tls_facts(transport: Any, names: dict[int, str]) -> dict:
    """TLS facts of a server-side connection: version, suite, ALPN, and the SNI seen by sni_callback."""
    obj = transport.get_extra_info("ssl_object")
    cipher = obj.cipher()
    return {
        "transport": "tls",
        "tls_version": tls_version_name(obj.version()),
        "tls_cipher": IANA.get(cipher[0], cipher[0]) if cipher else None,
        "sni": names.get(id(obj)),
        "alpn": obj.selected_alpn_protocol(),
        "decrypted": True,
    }


@scenario
def _wss_chromium(out_dir: Path, tmp: Path, netns: tuple[str, ...]) -> dict:
    run = Run("wss_chromium", out_dir, tmp, 9410)
    log = run.log
    page = CHROMIUM_PAGE % (
        json.dumps(CHROMIUM_MESSAGES),
        '"wss://" + location.host + "/ws"',
        CHROMIUM_BINARY,
    )
    names: dict[int, str] = {}
    requested: set[int] = set()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(run.cert, run.key)
    ctx.set_alpn_protocols([ALPN])
    ctx.sni_callback = lambda obj, name, _ctx: names.__setitem__(id(obj), name) if name else None

    async def main() -> None:
        from websockets.asyncio.server import ServerConnection, serve
        from websockets.datastructures import Headers
        from websockets.exceptions import ConnectionClosed
        from websockets.http11 import Response

        done = asyncio.Event()

        class Logged(ServerConnection):
            """Every TLS connection, as soon as its handshake is done (Chromium may open one that
            never sends a request)."""

            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                super().connection_made(transport)
                port = transport.get_extra_info("peername")[1]
                log.conn(port, server_port=run.port, **_server_tls_facts(transport, names))

        def process_request(conn: Any, request: Any) -> Any:  # the page and the favicon; upgrades go on
            requested.add(conn.remote_address[1])
            if request.path == "/":
                return Response(
                    200, "OK", Headers({"Content-Type": "text/html; charset=utf-8"}), page.encode()
                )
            if request.path != "/ws":
                return Response(404, "Not Found", Headers({"Content-Type": "text/plain"}), b"no\n")
            return None

        async def handler(ws: Any) -> None:
            cport = ws.remote_address[1]
            for m in CHROMIUM_MESSAGES:
                log.sent(cport, "client", m)
            log.sent(cport, "client", bytes(i % 251 for i in range(CHROMIUM_BINARY)))
            with contextlib.suppress(ConnectionClosed):
                async for msg in ws:
                    out = (
                        json.dumps({"ack": len(msg), "echo": msg[:40]}) if isinstance(msg, str) else msg[::-1]
                    )
                    await ws.send(out)
                    log.sent(cport, "server", out)
            await ws.wait_closed()
            log.conn(cport, **ws_conn_facts(ws, run.port, side="server"))
            done.set()

        server = await serve(
            handler,
            "127.0.0.1",
            run.port,
            ssl=ctx,
            compression="deflate",
            process_request=process_request,
            create_connection=Logged,
            ping_interval=None,
            max_size=None,
        )
        try:
            await run_chromium(
                f"https://{CHROMIUM_HOST}:{run.port}/",
                done,
                "--ignore-certificate-errors",
                f"--host-resolver-rules=MAP {CHROMIUM_HOST} 127.0.0.1",
                f"--ssl-key-log-file={run.keylog}",
            )
        finally:
            server.close()
            await server.wait_closed()

    run.record(lambda: asyncio.run(main()))
    for port, conn in log.conns.items():
        if port not in requested:  # opened ahead and never used: no application data to decrypt
            del conn["decrypted"]
    return run.finish(
        "headless Chromium (Debian chromium package) loads a page over https from a python websockets 17 "
        f"server (self-signed certificate, --ignore-certificate-errors; host {CHROMIUM_HOST} mapped to "
        "127.0.0.1 by --host-resolver-rules, so it is the SNI) that also serves wss:// with "
        "permessage-deflate on the same port; the page sends three texts and an ArrayBuffer, the server "
        "answers JSON acks and the reversed bytes, the page closes 1000 'page done'. Every TLS connection "
        "of the capture is listed (the page and favicon GETs too, and any connection Chromium opened ahead "
        "and did not use); key log from --ssl-key-log-file"
    )


# --------------------------------------------------------------------------------------------

if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "peer":
        peer_main(sys.argv[2:])
    else:
        print("run the scenarios through make_captures.py (--only wss_...)", file=sys.stderr)
        sys.exit(2)
