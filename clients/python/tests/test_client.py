"""The Python client against a real node: `eventfold serve --tcp` on a free
loopback port, in a fresh store. The node binary is $EVENTFOLD_BIN, or the
one `cargo test` builds (target/debug/eventfold); without it the tests
skip and say why."""

import os
import re
import subprocess
import sys
import tempfile
import threading
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eventfold_client import Client, ConcurrencyError, EventfoldError  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(os.environ.get("EVENTFOLD_BIN", ROOT / "target" / "debug" / "eventfold"))


@unittest.skipUnless(BIN.exists(), f"no eventfold binary at {BIN}: run `cargo test` first or set EVENTFOLD_BIN")
class ClientTest(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = tempfile.TemporaryDirectory()
        self.node = subprocess.Popen(
            [str(BIN), "--data", self.dir.name, "serve", "--tcp", "127.0.0.1:0"],
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        assert self.node.stderr is not None
        line = self.node.stderr.readline()
        match = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        self.assertIsNotNone(match, line)
        self.port = int(match.group(1)) if match else 0
        # Keep reading the node's log, so a full pipe never blocks it.
        threading.Thread(target=self.node.stderr.read, daemon=True).start()
        self.client = Client.connect("127.0.0.1", self.port)

    def tearDown(self) -> None:
        self.client.close()
        self.node.terminate()
        self.node.wait(timeout=30)
        if self.node.stderr:
            self.node.stderr.close()
        self.dir.cleanup()

    def test_append_read_and_concurrency(self) -> None:
        c = self.client
        r = c.append("order-1", "Placed", {"total": 12}, version="no_stream", tags=["customer:9"])
        self.assertEqual((r["sequence_number"], r["version"]), (1, 1))
        with self.assertRaises(ConcurrencyError) as caught:
            c.append("order-1", "Placed", {"total": 1}, version=0)
        self.assertEqual(caught.exception.current_version, 1)
        events = c.read_all(tags=["customer:9"])["events"]
        self.assertEqual([e["event_data"] for e in events], [{"total": 12}])
        self.assertEqual(events[0]["tags"], ["customer:9"])
        with self.assertRaises(EventfoldError) as bad:
            c.append("order-1", "$Reserved", {}, version="any")
        self.assertEqual(bad.exception.code, 12)

    def test_atomic_multi_stream_append_and_checkpoint(self) -> None:
        c = self.client
        ev = Client.event("E", {"n": 1})
        r = c.append_many([
            {"aggregate_id": "a-1", "version": "no_stream", "events": [ev]},
            {"aggregate_id": "b-1", "version": "no_stream", "events": [ev, ev]},
        ])
        self.assertEqual(len(r["streams"]), 2)
        c.append_many([{"aggregate_id": "c-1", "version": "any", "events": [ev]}],
                      checkpoint={"consumer": "proc", "position": 3})
        self.assertEqual(c.get_checkpoint("proc")["position"], 3)
        with self.assertRaises(EventfoldError) as again:
            c.append_many([{"aggregate_id": "c-1", "version": "any", "events": [ev]}],
                          checkpoint={"consumer": "proc", "position": 3})
        self.assertEqual(again.exception.code, 22)
        self.assertEqual(c.stats()["head"], 4)

    def test_dcb_and_pipelining(self) -> None:
        c = self.client
        q = {"items": [{"types": ["UserRegistered"], "tags": ["username:ann"]}]}
        head = c.read_query(q)["head"]
        cond = {"fail_if_events_match": q, "after": head}
        c.append("user-1", "UserRegistered", {}, tags=["username:ann"], condition=cond)
        with self.assertRaises(EventfoldError) as lost:
            c.append("user-2", "UserRegistered", {}, tags=["username:ann"], condition=cond)
        self.assertEqual(lost.exception.code, 22)
        # Pipelined: all sent before any reply is read.
        ids = [c.send({"type": "append", "aggregate_id": f"p-{i}", "version": "any",
                       "event_type": "E", "event_data": {"i": i}}) for i in range(20)]
        seqs = [c.wait(i)["sequence_number"] for i in ids]
        self.assertEqual(seqs, sorted(seqs))

    def test_subscription_iterates_in_order(self) -> None:
        c = self.client
        for i in range(5):
            c.append("s-1", "E", {"i": i})
        sub = c.subscribe(from_sequence=1, category="s")
        got = [next(sub)["sequence_number"] for _ in range(5)]
        self.assertEqual(got, [1, 2, 3, 4, 5])
        c.append("s-1", "E", {"i": 5})
        self.assertEqual(next(sub)["sequence_number"], 6)
        sub.close()


if __name__ == "__main__":
    unittest.main()
