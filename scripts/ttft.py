#!/usr/bin/env python3
"""Time to first token of a streamed chat completion, one request at a time.

Sends N streaming requests to each target over one keep-alive connection per target and
times, for each, from the request's first byte sent to the first SSE event that carries
content. Several targets take turns of 60 requests in one run, the first 10 of each turn
not kept (a request right after another target's finds the caches cold), so every target
sees the same state of the machine: on a VM whose speed drifts by tens of microseconds
between runs seconds apart, runs one after the other cannot resolve the few microseconds a
proxy adds. Give the mock upstream first and the proxies in front of it after: each
proxy's p50 minus the mock's is what it adds to the first token (auth, limits, metering,
the upstream hop).

Usage: scripts/ttft.py HOST:PORT[@KEY] [N] [KEY]          (one target; KEY for InstaGen)
       scripts/ttft.py --targets N HOST:PORT[@KEY]...     (interleaved)
Prints, per target: p50 and p90 in microseconds.
"""
import re
import socket
import sys
import time

CONTENT = re.compile(rb'"content":"[^"]')
BODY = (
    b'{"model":"bench","stream":true,'
    b'"messages":[{"role":"user","content":"Say hello in five words"}]}'
)
WARM_UP = 100
BLOCK = 60
BLOCK_WARM_UP = 10


class Target:
    def __init__(self, spec, key=""):
        addr, _, key_in_spec = spec.partition("@")
        self.addr = addr
        host, port = addr.rsplit(":", 1)
        key = key_in_spec or key
        head = (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n"
            + (f"Authorization: Bearer {key}\r\n" if key else "")
            + "\r\n"
        ).encode()
        self.request = head + BODY
        self.sock = socket.create_connection((host, int(port)))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.samples = []

    def one(self, keep):
        """One streamed request; its TTFT in µs is kept unless warming up."""
        start = time.perf_counter_ns()
        self.sock.sendall(self.request)
        buf = b""
        first = None
        # Read until the first content event, then drain to the end of the chunked body.
        while True:
            data = self.sock.recv(65536)
            if not data:
                raise SystemExit(f"{self.addr}: connection closed")
            buf += data
            if first is None and CONTENT.search(buf):
                first = time.perf_counter_ns()
            if buf.endswith(b"0\r\n\r\n"):
                break
        if first is None:
            raise SystemExit(f"{self.addr}: no content event in the answer")
        if keep:
            self.samples.append((first - start) / 1000)

    def percentile(self, q):
        s = sorted(self.samples)
        return s[min(len(s) - 1, int(q * len(s)))]


def main():
    args = sys.argv[1:]
    if args and args[0] == "--targets":
        n = int(args[1])
        targets = [Target(spec) for spec in args[2:]]
    else:
        n = int(args[1]) if len(args) > 1 else 2000
        targets = [Target(args[0], args[2] if len(args) > 2 else "")]
    if len(targets) == 1:
        for i in range(n + WARM_UP):
            targets[0].one(i >= WARM_UP)  # the first requests warm up both sides
    else:
        # In turns of BLOCK requests, the first few of each not kept: a request right after
        # another target's finds the caches cold, which a client at c=1 would not.
        for _ in range(0, n, BLOCK - BLOCK_WARM_UP):
            for t in targets:
                for i in range(BLOCK):
                    t.one(i >= BLOCK_WARM_UP)
    for t in targets:
        print(
            f"ttft p50 {t.percentile(0.5):.0f} us  p90 {t.percentile(0.9):.0f} us"
            f"  ({len(t.samples)} requests)  {t.addr}"
        )


if __name__ == "__main__":
    main()
