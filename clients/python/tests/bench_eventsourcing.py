"""Runs the library's timed recorder tests for eventfold, SQLite (file) and POPO."""
import os, sys, tempfile, unittest
import os
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..")); sys.path.insert(0, HERE)
os.environ.setdefault("EVENTFOLD_BIN", os.path.join(HERE, "..", "..", "..", "target", "release", "eventfold"))
import test_eventsourcing as t
from eventsourcing.tests import persistence as p
from eventsourcing.sqlite import SQLiteDatastore, SQLiteApplicationRecorder, SQLiteAggregateRecorder
from eventsourcing.popo import POPOApplicationRecorder, POPOAggregateRecorder
class SQLiteApp(p.ApplicationRecorderTestCase):
    def create_recorder(self):
        self.tmp = tempfile.NamedTemporaryFile(suffix=".db", delete=False)
        r = SQLiteApplicationRecorder(SQLiteDatastore(self.tmp.name)); r.create_table(); return r
class SQLiteAgg(p.AggregateRecorderTestCase):
    def create_recorder(self):
        self.tmp = tempfile.NamedTemporaryFile(suffix=".db", delete=False)
        r = SQLiteAggregateRecorder(SQLiteDatastore(self.tmp.name)); r.create_table(); return r
class POPOApp(p.ApplicationRecorderTestCase):
    def create_recorder(self): return POPOApplicationRecorder()
class POPOAgg(p.AggregateRecorderTestCase):
    def create_recorder(self): return POPOAggregateRecorder()
names = ["test_performance", "test_concurrent_throughput"]
suite = unittest.TestSuite()
for cls in [t.TestAggregateRecorder, SQLiteAgg, POPOAgg]:
    suite.addTest(cls("test_performance"))
for cls in [t.TestApplicationRecorder, SQLiteApp, POPOApp]:
    for n in names: suite.addTest(cls(n))
unittest.TextTestRunner(verbosity=0, stream=sys.stderr).run(suite)
