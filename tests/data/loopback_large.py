"""Loopback websockets echo: a short text, then binary messages over 64 KiB, then a clean close.

Run under `tcpdump -i lo --immediate-mode -B 262144 -s 0 -w F 'tcp port P'` to record
tests/data/loopback_large.pcap. Bigger socket send buffers let the kernel emit full 65,535-byte IP
packets on lo (65,549-byte Ethernet records), larger than scapy's default 65,535-byte cut.
"""
import asyncio
import socket
import sys

from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

PORT = int(sys.argv[1])
BUF = 4 * 1024 * 1024


def widen(ws) -> None:
    sock = ws.transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUF)


async def echo(ws):
    widen(ws)
    async for msg in ws:
        await ws.send(msg)


async def main():
    url = f"ws://127.0.0.1:{PORT}/echo"
    async with serve(echo, "127.0.0.1", PORT, compression=None, max_size=2**21), \
            connect(url, compression=None, max_size=2**21) as ws:
        widen(ws)
        await ws.send("hello")
        assert await ws.recv() == "hello"
        big = bytes(range(256)) * 800          # 204,800 bytes
        for _ in range(2):
            await ws.send(big)
            assert await ws.recv() == big
        await ws.close(1000, "bye")

asyncio.run(main())
