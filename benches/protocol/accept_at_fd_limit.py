"""`eventfold serve --tcp` at its file-descriptor limit: the CPU it uses and
the log it writes in 5 s while clients wait, then whether a client is served
once descriptors are free again.

    python3 benches/protocol/accept_at_fd_limit.py target/debug/eventfold

Needs `prlimit` (util-linux) to change the running node's limit.
"""
import os
import socket
import subprocess
import sys
import tempfile
import time

binary = sys.argv[1]
work = tempfile.mkdtemp()
log = open(os.path.join(work, "stderr.log"), "w+")
node = subprocess.Popen([binary, "--data", os.path.join(work, "data"), "serve", "--tcp", "127.0.0.1:0"],
                        stderr=log, text=True)
try:
    while True:
        log.seek(0)
        text = log.read()
        if "listening on" in text and text.endswith("\n"):
            break
        time.sleep(0.01)
    host, port = text.split("listening on ", 1)[1].split("\n", 1)[0].strip().rsplit(":", 1)
    fds = [int(f) for f in os.listdir("/proc/%d/fd" % node.pid)]
    subprocess.run(["prlimit", "--pid", str(node.pid), "--nofile=%d:" % (max(fds) + 1)], check=True)

    def cpu_seconds():
        fields = open("/proc/%d/stat" % node.pid).read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    waiting = [socket.create_connection((host, int(port))) for _ in range(5)]
    cpu0, size0 = cpu_seconds(), os.path.getsize(log.name)
    time.sleep(5)
    cpu1, size1 = cpu_seconds(), os.path.getsize(log.name)
    log.seek(0)
    lines = [line for line in log.read().splitlines() if "accept" in line]
    print("5 s at the limit: %.2f s of CPU, %d bytes of log, %d lines about accept"
          % (cpu1 - cpu0, size1 - size0, len(lines)))
    for line in lines[:3]:
        print("  " + line)
    subprocess.run(["prlimit", "--pid", str(node.pid), "--nofile=4096:"], check=True)
    late = socket.create_connection((host, int(port)))
    late.sendall(b'{"body":{"type":"stats","msg_id":1}}\n')
    print("a client after the limit is raised gets: %s" % late.makefile("rb").readline()[:70])
finally:
    node.kill()
