"""A background load on a policyd: worker threads asking recipients on
persistent connections until stopped.  Every answer is checked against the
set allowed for it, every latency is kept, and a lost connection is an
error (recorded, then the worker reconnects).

    with Load(d, pick) as load:     # pick(worker, n) -> (attrs, allowed set)
        ...fault...
    assert load.wrong == [] and load.errors == []
"""
import threading
import time


class Load:
    def __init__(self, d, pick, workers=4):
        self.d = d
        self.pick = pick
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.wrong = []
        self.errors = []
        self.max_latency = 0.0
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(workers)]

    def run(self, i):
        n = 0
        while not self.stop.is_set():
            try:
                with self.d.client(timeout=10) as c:
                    while not self.stop.is_set():
                        n += 1
                        attrs, allowed = self.pick(i, n)
                        t0 = time.monotonic()
                        got = c.ask(**attrs)
                        dt = time.monotonic() - t0
                        with self.lock:
                            self.max_latency = max(self.max_latency, dt)
                            if got in allowed:
                                self.ok += 1
                            else:
                                self.wrong.append((attrs.get("recipient"), got))
            except Exception as e:      # noqa: BLE001 - a reply that never came
                with self.lock:
                    self.errors.append(repr(e))

    def count(self):
        with self.lock:
            return self.ok

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(30)
        # a worker left running would outlive its test
        assert not any(t.is_alive() for t in self.threads), "a load worker did not end"
