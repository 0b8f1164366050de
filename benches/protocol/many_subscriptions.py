"""Many subscriptions on one connection to `eventfold serve --tcp`: the
node's threads, another client's append latency (median of 100), and how
long the node takes to tear the connection down. With `--other-category`
the subscriptions follow a category the appends are not in, so they cost
the node only their wake-ups and filters; without it each append is pushed
to every one of them.

    python3 benches/protocol/many_subscriptions.py target/debug/eventfold 1000 [--other-category] [serve flags…]
"""
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

binary, count = sys.argv[1], int(sys.argv[2])
flags = sys.argv[3:]
other_category = "--other-category" in flags
flags = [f for f in flags if f != "--other-category"]
data = tempfile.mkdtemp()
node = subprocess.Popen([binary, "--data", data, "serve", "--tcp", "127.0.0.1:0"] + flags,
                        stderr=subprocess.PIPE, text=True)
try:
    host, port = node.stderr.readline().rsplit("listening on ", 1)[1].strip().rsplit(":", 1)

    def threads():
        for line in open("/proc/%d/status" % node.pid):
            if line.startswith("Threads:"):
                return int(line.split()[1])

    def connect():
        s = socket.create_connection((host, int(port)))
        return s, s.makefile("rb")

    def append_ms(s, replies, n=100):
        times = []
        for i in range(n):
            start = time.perf_counter()
            s.sendall((json.dumps({"body": {"type": "append", "msg_id": i, "aggregate_id": "x-1",
                                            "event_type": "E", "event_data": {"i": i}, "version": "any"}})
                       + "\n").encode())
            replies.readline()
            times.append((time.perf_counter() - start) * 1000)
        return statistics.median(times)

    other, other_replies = connect()
    alone = append_ms(other, other_replies)
    idle_threads = threads()
    sub, pushed = connect()
    for i in range(count):
        request = {"type": "subscribe", "msg_id": i}
        if other_category:
            request["category"] = "y"
        sub.sendall((json.dumps({"body": request}) + "\n").encode())
    subscribed = 0
    while subscribed < count:
        body = json.loads(pushed.readline())["body"]
        if body["type"] == "subscribed":
            subscribed += 1
        elif body["type"] == "error":
            print("refused: " + body["text"])
            break

    def drain():
        try:
            for _ in pushed:
                pass
        except OSError:
            pass

    threading.Thread(target=drain, daemon=True).start()
    busy = append_ms(other, other_replies)
    print("%d subscriptions: %d threads (%d without); another client's append: median %.3f ms (%.3f ms without)"
          % (subscribed, threads(), idle_threads, busy, alone))
    start = time.perf_counter()
    sub.shutdown(socket.SHUT_RDWR)
    sub.close()
    while threads() > idle_threads:
        time.sleep(0.01)
    print("closing the connection: %.2f s until the node is back to %d threads"
          % (time.perf_counter() - start, idle_threads))
finally:
    node.kill()
