"""A bounded loopback burst (the load for the capture benchmark): N UDP datagrams from one socket to a local
sink, then M refused TCP connects. Prints one JSON line with what it offered. Loopback only.

    python burst.py [--datagrams 100000] [--connects 3000]
"""

from __future__ import annotations

import argparse
import json
import socket
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datagrams", type=int, default=100_000)
    parser.add_argument("--connects", type=int, default=3000)
    args = parser.parse_args()
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    target = sink.getsockname()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    refused_port = closed.getsockname()[1]
    closed.close()  # bound then closed: nothing listens there
    start = time.perf_counter()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
        for _ in range(args.datagrams):
            out.sendto(b"x" * 32, target)
    refused = 0
    for _ in range(args.connects):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", refused_port)) == 111:
                refused += 1
    elapsed = time.perf_counter() - start
    # every datagram is one packet; every refused connect is a SYN and an RST/ACK
    print(json.dumps({"datagrams": args.datagrams, "connects": args.connects, "refused": refused,
                      "offered": args.datagrams + 2 * refused, "seconds": round(elapsed, 3),
                      "sink_port": target[1], "refused_port": refused_port}))


if __name__ == "__main__":
    main()
