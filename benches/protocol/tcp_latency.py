"""Round trips to `eventfold serve --tcp`: reads of growing size, and two
pipelined requests. Prints the median of 50 round trips of each.

    python3 benches/protocol/tcp_latency.py target/debug/eventfold

Only the Python standard library is needed. The node runs on a fresh store
in a temporary directory, filled with 200 events of ~300 bytes.
"""
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time

binary = sys.argv[1]
data = tempfile.mkdtemp()
node = subprocess.Popen([binary, "--data", data, "serve", "--tcp", "127.0.0.1:0"],
                        stderr=subprocess.PIPE, text=True)
try:
    host, port = node.stderr.readline().rsplit("listening on ", 1)[1].strip().rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    replies = sock.makefile("rb")

    def send(body):
        sock.sendall((json.dumps({"src": "c", "dest": "eventstore", "body": body}) + "\n").encode())

    for i in range(200):
        send({"type": "append", "msg_id": i, "aggregate_id": "order-%d" % (i % 10), "event_type": "Placed",
              "event_data": {"order": i, "customer": "cust-%d" % i,
                             "items": [{"sku": "A-1", "qty": 2, "price": 19.99}], "note": "x" * 80},
              "version": "any"})
        replies.readline()

    def median_ms(round_trip, n=50):
        times = []
        for _ in range(n):
            start = time.perf_counter()
            round_trip()
            times.append((time.perf_counter() - start) * 1000)
        return statistics.median(times)

    for limit in (1, 30, 100, 200):
        size = [0]

        def read_all():
            send({"type": "read_all", "msg_id": 1, "limit": limit})
            size[0] = len(replies.readline())

        ms = median_ms(read_all)
        print("read_all of %3d events (%6d-byte reply): median %7.3f ms" % (limit, size[0], ms))

    for limit in (1, 5, 20):
        def two_pipelined():
            # Both requests in one segment, as a pipelining client sends them.
            lines = [json.dumps({"body": {"type": "read_all", "msg_id": i, "limit": limit}}) for i in (1, 2)]
            sock.sendall(("\n".join(lines) + "\n").encode())
            replies.readline()
            replies.readline()

        print("two pipelined read_all of %2d events: median %7.3f ms" % (limit, median_ms(two_pipelined)))
finally:
    node.kill()
