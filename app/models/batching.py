"""Dynamic batching: one batcher per served graph.

Requests put their rows on the batcher's queue and await a future. A single worker task
takes rows off the queue, runs the graph once on them in an inference thread (off the event
loop), and hands each request its slice of the outputs.

When to run: if the worker finds a single request waiting, it runs at once (no delay is
paid at low load). If several are waiting, traffic is concurrent, and it gathers further
rows for up to `max_delay_s` after the first arrived, or until `max_batch_size` rows.
A request larger than `max_batch_size` is split into chunks, so that it shares the graph
with others and a timed-out one stops between chunks; on a cheap CPU graph with nothing
else queued or running, it runs in one piece. The queue is bounded in rows:
beyond `max_queue_rows` a request is refused with 503 instead of growing memory. A request
whose rows are not all run within `timeout_s` is answered 504, and its chunks still queued
are dropped unrun.
With batching off, each request runs on its own, through the same bounded queue.

Where a graph runs: in the inference thread pool, off the event loop, unless its recent
runs took less than `inline_max_s` (a moving average). Handing work to a thread and back
costs tens of microseconds, more than a small MLP's whole run: such a graph runs on the
event loop directly, which stalls it for no longer than the hand-off would have cost. A
heavier graph, or a run that turns out slow (a large batch), moves back to the thread.
A run in the pool is measured by its CPU time on a CPU graph, not its wall time: there, the
wall time also counts the wait for the GIL, which the loop holds under load, and the time the
thread spent preempted by the loop and the clients on a busy machine. Those kept a cheap graph
in the thread for good once it got there, at the cost of two hand-offs per request. (A GPU
graph's run waits for the device: wall time there.) A run on the loop is measured by its wall
time (reading a thread's CPU clock is a system call), and one outlier counts at most twice
`inline_max_s`: a single preemption does not move a cheap graph to the thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from app import metrics
from app.models.runtimes import LoadedGraph
from core.errors import InferenceFailed, NotReady, Overloaded, RequestTimeout

logger = logging.getLogger("genserve")


@dataclass
class _Chunk:
    inputs: dict[str, np.ndarray]
    rows: int
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)


class WrongOutput(ValueError):
    """A graph's outputs do not have the shapes its manifest implies for the rows it was given."""


def check_outputs(outputs: list[np.ndarray], rows: int, shapes: list[tuple[int, ...]]) -> None:
    """Rows out = rows in, and every other axis as the manifest says; WrongOutput otherwise."""
    got = [tuple(o.shape) for o in outputs]
    want = [(rows, *shape) for shape in shapes]
    if got != want:
        raise WrongOutput(f"outputs of shapes {got} for {rows} rows in, where the manifest implies {want}")


class Batcher:
    def __init__(
        self,
        graph: LoadedGraph,
        executor: Executor,
        *,
        model: str,
        version: int,
        graph_name: str,
        batching: bool,
        max_batch_size: int,
        max_delay_s: float,
        max_queue_rows: int,
        inline_max_s: float = 0.0,
        timeout_s: float | None = None,
        output_shapes: list[tuple[int, ...]] | None = None,
    ) -> None:
        self.graph = graph
        self.output_shapes = output_shapes  # each output's shape past the rows axis, checked on every run
        self.executor = executor
        self.batching = batching
        self.max_batch_size = max_batch_size if batching else 1 << 62
        self.max_delay_s = max_delay_s
        self.max_queue_rows = max_queue_rows
        self.inline_max_s = inline_max_s
        self.timeout_s = timeout_s
        self._run_s: float | None = None  # moving average of a run's cost (see above); None until measured
        self._thread_clock = time.thread_time if graph.device == "cpu" else time.perf_counter
        self._queue: deque[_Chunk] = deque()
        self._queued_rows = 0
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closing = False
        self._busy = False  # the worker holds a batch (gathering or running it)
        labels = {"model": model, "version": str(version), "graph": graph_name}
        self._batch_size = metrics.BATCH_SIZE.labels(**labels)
        self._queue_wait = metrics.QUEUE_WAIT.labels(**labels)
        self._inference_time = metrics.INFERENCE_TIME.labels(**labels)
        self._queue_depth = metrics.QUEUE_DEPTH.labels(**labels)
        self.name = f"{model}@{version}/{graph_name}"

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._work(), name=f"batcher {self.name}")
        self._task.add_done_callback(self._fail_pending)

    def _fail_pending(self, task: asyncio.Task) -> None:
        """Should the worker ever end with rows still queued, their requests fail instead of hanging."""
        if not task.cancelled() and task.exception() is not None:
            logger.error("%s: batch worker died", self.name, exc_info=task.exception())
        if not self._queue:  # a clean stop: leave the depth gauge alone (a replacement version shares it)
            return
        while self._queue:
            chunk = self._queue.popleft()
            if not chunk.future.done():
                chunk.future.set_exception(NotReady(f"{self.name} stopped"))
        self._queued_rows = 0
        self._queue_depth.set(0)

    async def stop(self) -> None:
        """Refuse new rows, finish the queued ones, then stop."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task

    async def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run the graph on `inputs` (arrays with the same number of rows) and return its outputs."""
        if self._closing or not self.running:
            raise NotReady(f"{self.name} is not accepting requests (starting or shutting down)")
        rows = len(next(iter(inputs.values())))
        if self._queued_rows + rows > self.max_queue_rows:
            raise Overloaded(
                f"{self.name}: queue full ({self._queued_rows} rows waiting, limit {self.max_queue_rows}); "
                "retry shortly"
            )
        idle = not self._queue and not self._busy
        if idle and rows <= self.max_batch_size and self._cheap:
            return self._run_now(inputs, rows)
        loop = asyncio.get_running_loop()
        # A large request is split into batch-sized chunks: it shares the graph fairly with others,
        # and a timed-out one stops between chunks. On a cheap graph with no others in sight, one
        # run of all its rows (in the thread) costs much less than many, and is short anyway.
        # (CPU only: on a GPU, MAX_BATCH_SIZE also bounds the memory one run takes.)
        step = rows if idle and self._cheap and self.graph.device == "cpu" else self.max_batch_size
        chunks = [
            _Chunk(
                {k: v[start : start + step] for k, v in inputs.items()}, min(step, rows - start), loop.create_future()
            )
            for start in range(0, rows, step)
        ]
        self._queue.extend(chunks)
        self._queued_rows += rows
        self._queue_depth.set(self._queued_rows)
        self._wakeup.set()
        try:
            # each chunk's future in turn (they run in order), not a gather: a gather cancelled inside
            # wait_for, as when a stream's client goes away, logs "exception was never retrieved" (3.11)
            async with asyncio.timeout(self.timeout_s):
                results = [await c.future for c in chunks]
        except TimeoutError:
            raise RequestTimeout(
                f"{self.name}: the request's {rows} rows were not run within {self.timeout_s:g} s "
                "(GENSERVE_REQUEST_TIMEOUT_S); the service is too busy or the request too large"
            ) from None
        finally:
            for c in chunks:  # a failed or timed-out request's other chunks: not run if still queued, not reported
                if not c.future.cancel() and not c.future.cancelled():
                    c.future.exception()  # already failed too: read, so asyncio does not log it as never retrieved
        if len(results) == 1:
            return results[0]
        return [np.concatenate(parts) for parts in zip(*results, strict=True)]

    @property
    def _cheap(self) -> bool:
        return self._run_s is not None and self._run_s < self.inline_max_s

    def _run_now(self, inputs: dict[str, np.ndarray], rows: int) -> list[np.ndarray]:
        """Nothing is queued or running and the graph is cheap: run this request's rows at once,
        here, with none of the queue's hand-offs (which would cost more than the run)."""
        try:
            outputs, took, cost = self._timed_run(inputs)
        except Exception as exc:
            raise self._failed(exc, rows) from None
        self._ran(rows, took, cost)
        self._queue_wait.observe(0.0)
        return outputs

    def _failed(self, exc: Exception, rows: int) -> InferenceFailed:
        """Logs a failed run (with its traceback) and returns what its requests are told."""
        if isinstance(exc, WrongOutput):  # the model's fault, said in full: no traceback to read
            logger.error("%s: %s", self.name, exc)
            return InferenceFailed(f"{self.name}: {exc}; the model is faulty")
        logger.exception("%s: inference failed on %d rows", self.name, rows)
        return InferenceFailed(f"{self.name}: inference failed ({type(exc).__name__})")

    def _timed_run(self, inputs: dict[str, np.ndarray]) -> tuple[list[np.ndarray], float, float]:
        """On the event loop: the graph's outputs, the run's duration, and its cost (the same)."""
        started = time.perf_counter()
        outputs = self.graph.run(inputs)
        took = time.perf_counter() - started
        self._check(outputs, inputs)
        return outputs, took, took

    def _timed_run_in_thread(self, inputs: dict[str, np.ndarray]) -> tuple[list[np.ndarray], float, float]:
        """In the pool: the graph's outputs, the run's duration and its cost (CPU time on a CPU
        graph), timed where it runs: timed from the event loop, the run would also count the
        loop's delay in taking it back, which grows with load."""
        clock = self._thread_clock
        cost_started = clock()
        started = time.perf_counter()
        outputs = self.graph.run(inputs)
        took = time.perf_counter() - started
        cost = clock() - cost_started
        self._check(outputs, inputs)
        return outputs, took, cost

    def _check(self, outputs: list[np.ndarray], inputs: dict[str, np.ndarray]) -> None:
        if self.output_shapes is not None:
            rows = len(next(iter(inputs.values())))
            check_outputs(outputs, rows, self.output_shapes)

    def _ran(self, rows: int, took: float, cost: float) -> None:
        if rows <= self.max_batch_size:  # the typical run; a lone large request's single run is not
            if self._run_s is None:
                self._run_s = cost
            else:  # an outlier (a preemption) counts at most twice the limit: one cannot flip a cheap graph
                self._run_s = 0.8 * self._run_s + 0.2 * min(cost, 2 * self.inline_max_s or cost)
        self._inference_time.observe(took)
        self._batch_size.observe(rows)

    async def _work(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = self._take([])
            if not batch:  # only abandoned chunks were queued
                self._queue_depth.set(self._queued_rows)
                continue
            self._busy = True
            try:
                if self.batching and len(batch) > 1 and self.max_delay_s > 0:
                    await self._gather_more(batch)
                await self._execute(batch)
            finally:
                self._busy = False

    def _take(self, batch: list[_Chunk]) -> list[_Chunk]:
        """Move queued chunks into `batch` while they fit in one batch (always at least one)."""
        rows = sum(c.rows for c in batch)
        while self._queue and (not batch or rows + self._queue[0].rows <= self.max_batch_size):
            chunk = self._queue.popleft()
            if chunk.future.done():  # abandoned (its request was cancelled): drop, do not run
                self._queued_rows -= chunk.rows
                continue
            batch.append(chunk)
            rows += chunk.rows
            if not self.batching:
                break
        return batch

    async def _gather_more(self, batch: list[_Chunk]) -> None:
        deadline = batch[0].enqueued + self.max_delay_s
        while sum(c.rows for c in batch) < self.max_batch_size and not self._closing and not self._queue:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return
            self._take(batch)  # whatever is left queued did not fit: the loop condition ends the wait

    async def _execute(self, batch: list[_Chunk]) -> None:
        rows = sum(c.rows for c in batch)
        self._queued_rows -= rows
        self._queue_depth.set(self._queued_rows)
        started = time.perf_counter()
        for chunk in batch:
            self._queue_wait.observe(started - chunk.enqueued)
        if len(batch) == 1:
            inputs = batch[0].inputs
        else:
            inputs = {k: np.concatenate([c.inputs[k] for c in batch]) for k in batch[0].inputs}
        try:
            if self._cheap and rows <= self.max_batch_size:
                outputs, took, cost = self._timed_run(inputs)
            else:
                outputs, took, cost = await asyncio.get_running_loop().run_in_executor(
                    self.executor, self._timed_run_in_thread, inputs
                )
        except Exception as exc:  # a failing graph fails its requests, never the worker
            failure = self._failed(exc, rows)
            for chunk in batch:
                if not chunk.future.done():
                    chunk.future.set_exception(InferenceFailed(failure.message))  # one each: tracebacks differ
            return
        self._ran(rows, took, cost)
        offset = 0
        for chunk in batch:
            if not chunk.future.done():  # cancelled while its batch ran
                chunk.future.set_result([out[offset : offset + chunk.rows] for out in outputs])
            offset += chunk.rows
