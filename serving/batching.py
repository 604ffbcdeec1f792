"""Dynamic batching: concurrent requests to one model run as one batch.

Requests wait at most `delay` seconds for company, and only while other requests are
inside the server (a lone request at concurrency 1 runs at once); a batch closes early
when it reaches `max_batch_size` rows. The batch runs in a worker thread (ONNX Runtime and TensorFlow
release the GIL), and each request gets back exactly its own rows.
"""

import asyncio
import concurrent.futures
import dataclasses
import time

import numpy as np


class BatcherClosed(Exception):
    """`submit` on a stopped batcher."""


class QueueTimeout(Exception):
    """A request's own timeout passed while it waited for a batch; `waited_s` says how long."""

    def __init__(self, waited_s):
        super().__init__(waited_s)
        self.waited_s = waited_s


@dataclasses.dataclass
class Statistics:
    """What a model version did, in Triton's terms (`/v2/models/NAME/stats`): requests that
    succeeded or failed and their time in the server, their time queued, each run's time
    by batch size, rows and runs, and when it last ran (ms since the epoch)."""

    success: list = dataclasses.field(default_factory=lambda: [0, 0])  # [count, ns]
    fail: list = dataclasses.field(default_factory=lambda: [0, 0])
    queue: list = dataclasses.field(default_factory=lambda: [0, 0])
    compute_infer: list = dataclasses.field(default_factory=lambda: [0, 0])
    by_batch_size: dict = dataclasses.field(default_factory=dict)  # rows -> [count, ns]
    fail_by_reason: dict = dataclasses.field(default_factory=dict)  # Triton's reasons -> count
    inference_count: int = 0
    execution_count: int = 0
    last_inference_ms: int = 0

    def succeeded(self, ns):
        """Counts a request answered after `ns` nanoseconds in the server."""
        _add(self.success, ns)

    def failed(self, reason, ns):
        """Counts a failed request: `reason` is Triton's REJECTED, CANCELED, BACKEND or OTHER."""
        _add(self.fail, ns)
        self.fail_by_reason[reason] = self.fail_by_reason.get(reason, 0) + 1

    def as_triton(self, name, version):
        def pair(counted):
            return {"count": counted[0], "ns": counted[1]}

        return {
            "name": name,
            "version": version,
            "last_inference": self.last_inference_ms,
            "inference_count": self.inference_count,
            "execution_count": self.execution_count,
            "inference_stats": {
                "success": pair(self.success),
                "fail": pair(self.fail),
                "queue": pair(self.queue),
                "compute_infer": pair(self.compute_infer),
            },
            "batch_stats": [
                {"batch_size": size, "compute_infer": pair(counted)}
                for size, counted in sorted(self.by_batch_size.items())
            ],
        }


def _add(counted, ns):
    counted[0] += 1
    counted[1] += ns


@dataclasses.dataclass
class _Pending:
    inputs: dict
    rows: int
    future: asyncio.Future
    # time.monotonic(), not the loop's clock: uvloop's is libuv's, in whole milliseconds
    # and cached per loop iteration, so a 1 µs timeout never passed under it.
    submitted: float
    expires: float = None  # None: waits as long as it takes


class DynamicBatcher:
    """Gathers `submit` calls for one model into batched `backend.run` calls.

    Args:
      backend: has `run({name: array}) -> {name: array}`, batch axis first.
      max_batch_size: most rows in one run (a single larger request runs alone).
      delay: seconds the first request of a batch waits for others.
      on_batch: optional callback with each run's row count (for metrics).
      in_flight: optional callable giving the number of requests now inside the server;
        a batch stops waiting once it holds them all.
    """

    def __init__(self, backend, max_batch_size, delay, on_batch=None, in_flight=None):
        self.backend = backend
        self.max_batch_size = max_batch_size
        self.delay = delay
        self.on_batch = on_batch
        self.in_flight = in_flight
        self._queue = asyncio.Queue()
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self._task = None
        self._carry = None  # a request that did not fit the previous batch
        # Rows submitted and not yet in a running batch (what backpressure bounds).
        self.queued_rows = 0
        self._running = False  # a batch is in the model
        self.closed = False
        self.statistics = Statistics()

    @property
    def pending_requests(self):
        """Requests waiting for a batch (not yet in a running one)."""
        return self._queue.qsize() + (self._carry is not None)

    def start(self):
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self, drain_s=0.0):
        """Stops the loop; with `drain_s`, the requests already queued run first (for up
        to that long), as when a model version is unloaded while serving."""
        self.closed = True  # takes no new requests from here on
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_s
        while (self.queued_rows or self._running) and loop.time() < deadline:
            await asyncio.sleep(0.005)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._executor.shutdown(wait=True)

    async def submit(self, inputs, timeout_s=None):
        """Runs `inputs` (`{name: [rows, ...]}`) as part of a batch; returns its outputs.

        Args:
          inputs: `{name: [rows, ...]}`.
          timeout_s: how long the request may wait for its batch to start (None: as
            long as it takes); once in a running batch it runs to the end.

        Raises:
          BatcherClosed: the batcher was stopped (its model version unloaded).
          QueueTimeout: `timeout_s` passed before the request's batch started.
        """
        if self.closed:
            raise BatcherClosed()
        rows = len(next(iter(inputs.values())))
        future = asyncio.get_running_loop().create_future()
        self.queued_rows += rows
        now = time.monotonic()
        await self._queue.put(_Pending(inputs, rows, future, now, None if timeout_s is None else now + timeout_s))
        return await future

    def _expired(self, item):
        """Fails `item` when its timeout has passed (its rows leave the queue's count)."""
        now = time.monotonic()
        if item.expires is None or now < item.expires:
            return False
        self.queued_rows -= item.rows
        if not item.future.done():
            item.future.set_exception(QueueTimeout(now - item.submitted))
        return True

    async def _next_batch(self):
        first = self._carry or await self._queue.get()
        self._carry = None
        while self._expired(first):
            first = await self._queue.get()
        batch, rows = [first], first.rows
        deadline = asyncio.get_running_loop().time() + self.delay
        while rows < self.max_batch_size:
            if self._queue.empty() and self.in_flight is not None and self.in_flight() <= len(batch):
                break  # everyone who could join is already here
            timeout = deadline - asyncio.get_running_loop().time()
            try:
                item = self._queue.get_nowait() if timeout <= 0 else await asyncio.wait_for(self._queue.get(), timeout)
            except (asyncio.TimeoutError, asyncio.QueueEmpty):
                break
            if self._expired(item):
                continue
            if rows + item.rows > self.max_batch_size:
                self._carry = item
                break
            batch.append(item)
            rows += item.rows
        self.queued_rows -= rows
        return batch, rows

    async def _loop(self):
        loop = asyncio.get_running_loop()
        while True:
            batch, rows = await self._next_batch()
            try:
                names = batch[0].inputs.keys()
                inputs = {name: np.concatenate([item.inputs[name] for item in batch]) for name in names}
                self._running = True
                started = time.monotonic()
                for item in batch:
                    _add(self.statistics.queue, int((started - item.submitted) * 1e9))
                outputs = await loop.run_in_executor(self._executor, self.backend.run, inputs)
                ns = int((time.monotonic() - started) * 1e9)
                _add(self.statistics.compute_infer, ns)
                _add(self.statistics.by_batch_size.setdefault(rows, [0, 0]), ns)
                self.statistics.inference_count += rows
                self.statistics.execution_count += 1
                self.statistics.last_inference_ms = int(time.time() * 1000)
            except Exception as error:  # a fault fails this batch's requests; the loop serves on
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(error)
                continue
            finally:
                self._running = False
            if self.on_batch:
                self.on_batch(rows)
            start = 0
            for item in batch:
                if not item.future.done():
                    item.future.set_result({k: v[start : start + item.rows] for k, v in outputs.items()})
                start += item.rows
