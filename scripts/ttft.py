#!/usr/bin/env python3
"""Time to first token of a streamed chat completion, one request at a time.

Sends N streaming requests over one keep-alive connection and times, for each, from the
request's first byte sent to the first SSE event that carries content. Run it against the
mock upstream and then against InstaGen in front of it: the difference of the two p50s is
what InstaGen adds to the first token (auth, limits, metering, the upstream hop).

Usage: scripts/ttft.py HOST:PORT [N] [KEY]   (KEY only for InstaGen; the mock needs none)
Prints: p50 and p90 in microseconds.
"""
import re
import socket
import sys
import time

CONTENT = re.compile(rb'"content":"[^"]')


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    key = sys.argv[3] if len(sys.argv) > 3 else ""
    body = (
        b'{"model":"bench","stream":true,'
        b'"messages":[{"role":"user","content":"Say hello in five words"}]}'
    )
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        + (f"Authorization: Bearer {key}\r\n" if key else "")
        + "\r\n"
    ).encode()
    request = head + body
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    samples = []
    for i in range(n + 100):
        start = time.perf_counter_ns()
        sock.sendall(request)
        buf = b""
        first = None
        # Read until the first content event, then drain to the end of the chunked body.
        while True:
            data = sock.recv(65536)
            if not data:
                raise SystemExit("connection closed")
            buf += data
            if first is None and CONTENT.search(buf):
                first = time.perf_counter_ns()
            if buf.endswith(b"0\r\n\r\n"):
                break
        if i >= 100:  # the first 100 warm up both sides
            samples.append((first - start) / 1000)
    samples.sort()
    p = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))]
    print(f"ttft p50 {p(0.5):.0f} us  p90 {p(0.9):.0f} us  ({n} requests)")


if __name__ == "__main__":
    main()
