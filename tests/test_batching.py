"""Dynamic batching on a real ONNX Runtime graph, and through a live server over real HTTP."""

import asyncio
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from app.models.batching import Batcher
from app.models.runtimes import load_graph
from core.errors import InferenceFailed, NotReady, Overloaded
from core.repository import read_manifest
from tests.conftest import DEFAULT_MODELS_DIR, metric_value


class CountingGraph:
    """The digits-cvae decoder on ONNX Runtime, recording the rows of every run."""

    def __init__(self) -> None:
        path = DEFAULT_MODELS_DIR / "digits-cvae" / "1"
        artifact = read_manifest(path).decoder.artifact("onnx")
        self.inner = load_graph(artifact, path, "cpu", 1)
        self.input_names, self.output_names, self.device = self.inner.input_names, self.inner.output_names, "cpu"
        self.batches: list[int] = []

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.batches.append(len(inputs["z"]))
        return self.inner.run(inputs)


def rows(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"z": rng.standard_normal((n, 8), dtype=np.float32), "y": rng.integers(0, 10, n).astype(np.int64)}


async def with_batcher(graph, test, **options) -> None:
    settings = {"batching": True, "max_batch_size": 64, "max_delay_s": 0.005, "max_queue_rows": 4096, **options}
    with ThreadPoolExecutor(1) as executor:
        batcher = Batcher(graph, executor, model="test", version=1, graph_name="decoder", **settings)
        batcher.start()
        try:
            await test(batcher)
        finally:
            await batcher.stop()


def test_concurrent_requests_are_batched_and_get_their_own_rows() -> None:
    graph = CountingGraph()
    requests = [rows(1 + i % 3, seed=i) for i in range(60)]
    expected = [graph.inner.run(r) for r in requests]

    async def test(batcher: Batcher) -> None:
        results = await asyncio.gather(*(batcher.run(r) for r in requests))
        for got, want in zip(results, expected, strict=True):
            np.testing.assert_allclose(got[0], want[0], atol=1e-5)

    asyncio.run(with_batcher(graph, test))
    assert sum(graph.batches) == sum(len(r["z"]) for r in requests)
    assert max(graph.batches) > 1 and len(graph.batches) < 60
    assert max(graph.batches) <= 64


def test_a_request_larger_than_the_batch_is_split_and_reassembled() -> None:
    graph = CountingGraph()
    small, large = rows(3, seed=0), rows(150, seed=1)

    async def test(batcher: Batcher) -> None:
        _, (probs,) = await asyncio.gather(batcher.run(small), batcher.run(large))
        np.testing.assert_allclose(probs, graph.inner.run(large)[0], atol=1e-5)

    asyncio.run(with_batcher(graph, test))
    assert graph.batches == [3, 64, 64, 22]  # the small request is not held up by all 150 rows


@pytest.mark.parametrize(("inline_max_s", "expected"), [(1.0, [1, 150]), (0.0, [1, 64, 64, 22])])
def test_a_lone_large_request_runs_in_one_piece_on_a_cheap_graph(inline_max_s, expected) -> None:
    """Cheap (recent runs under inline_max_s): one run. Otherwise chunks, which a timeout can stop."""
    graph = CountingGraph()
    large = rows(150, seed=1)

    async def test(batcher: Batcher) -> None:
        await batcher.run(rows(1, seed=0))  # the first run is measured
        (probs,) = await batcher.run(large)
        np.testing.assert_allclose(probs, graph.inner.run(large)[0], atol=1e-5)

    asyncio.run(with_batcher(graph, test, inline_max_s=inline_max_s))
    assert graph.batches == expected


def test_a_single_request_runs_without_waiting_for_the_delay() -> None:
    graph = CountingGraph()

    async def test(batcher: Batcher) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await batcher.run(rows(1, seed=0))
        assert loop.time() - started < 0.5  # the 0.5 s batching delay was not paid
        assert graph.batches == [1]

    asyncio.run(with_batcher(graph, test, max_delay_s=0.5))


def test_batching_off_runs_each_request_on_its_own() -> None:
    graph = CountingGraph()
    requests = [rows(2, seed=i) for i in range(20)]

    async def test(batcher: Batcher) -> None:
        await asyncio.gather(*(batcher.run(r) for r in requests))

    asyncio.run(with_batcher(graph, test, batching=False))
    assert graph.batches == [2] * 20


def test_a_full_queue_answers_overloaded_and_accepted_rows_complete() -> None:
    graph = CountingGraph()

    async def test(batcher: Batcher) -> None:
        outcomes = await asyncio.gather(*(batcher.run(rows(10, seed=i)) for i in range(30)), return_exceptions=True)
        accepted = [o for o in outcomes if not isinstance(o, BaseException)]
        shed = [o for o in outcomes if isinstance(o, Overloaded)]
        assert len(accepted) + len(shed) == 30 and shed and accepted
        assert all(o[0].shape == (10, 64) for o in accepted)
        assert shed[0].headers == {"Retry-After": "1"} and "queue full" in shed[0].message
        (after,) = await batcher.run(rows(10, seed=99))  # back to normal once drained
        assert after.shape == (10, 64)

    asyncio.run(with_batcher(graph, test, max_queue_rows=100))


def test_a_failing_run_fails_its_requests_and_the_worker_goes_on() -> None:
    graph = CountingGraph()

    async def test(batcher: Batcher) -> None:
        bad = {"z": np.zeros((2, 7), np.float32), "y": np.zeros(2, np.int64)}  # wrong latent size
        with pytest.raises(InferenceFailed, match="inference failed"):
            await batcher.run(bad)
        (probs,) = await batcher.run(rows(3, seed=0))
        assert probs.shape == (3, 64)

    asyncio.run(with_batcher(graph, test, batching=False))


def test_stop_finishes_queued_rows_then_refuses_new_ones() -> None:
    graph = CountingGraph()

    async def main() -> None:
        with ThreadPoolExecutor(1) as executor:
            batcher = Batcher(
                graph,
                executor,
                model="t",
                version=1,
                graph_name="decoder",
                batching=True,
                max_batch_size=4,
                max_delay_s=0,
                max_queue_rows=1000,
            )
            batcher.start()
            pending = [asyncio.ensure_future(batcher.run(rows(4, seed=i))) for i in range(10)]
            await asyncio.sleep(0)
            await batcher.stop()
            assert all(p.done() and p.result()[0].shape == (4, 64) for p in pending)
            with pytest.raises(NotReady):
                await batcher.run(rows(1, seed=0))

    asyncio.run(main())


class FailingGraph(CountingGraph):
    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.batches.append(len(inputs["z"]))
        raise RuntimeError("graph broke")


def test_a_failed_split_request_reports_once_and_skips_its_queued_chunks(caplog: pytest.LogCaptureFixture) -> None:
    graph = FailingGraph()

    async def test(batcher: Batcher) -> None:
        with pytest.raises(InferenceFailed):
            await batcher.run(rows(40, seed=0))  # 10 chunks of 4
        await asyncio.sleep(0.05)
        assert batcher._queued_rows == 0

    asyncio.run(with_batcher(graph, test, max_batch_size=4))
    import gc

    gc.collect()
    assert len(graph.batches) <= 2  # the chunk that failed (and at most the one already running)
    assert "exception was never retrieved" not in caplog.text


def test_rows_of_a_cancelled_request_are_not_run() -> None:
    graph = CountingGraph()

    async def test(batcher: Batcher) -> None:
        task = asyncio.ensure_future(batcher.run(rows(40, seed=0)))
        await asyncio.sleep(0)  # queued
        task.cancel()
        (probs,) = await batcher.run(rows(3, seed=1))  # the worker goes on past the abandoned rows
        assert probs.shape == (3, 64) and batcher._queued_rows == 0

    asyncio.run(with_batcher(graph, test, max_batch_size=4))
    assert sum(graph.batches) < 40 + 3


def test_no_wait_when_the_next_request_does_not_fit() -> None:
    graph = CountingGraph()

    async def test(batcher: Batcher) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.gather(*(batcher.run(rows(n, seed=n)) for n in (2, 5, 5)))
        assert loop.time() - started < 0.4  # not the 0.5 s delay: the batch was as full as it could get

    asyncio.run(with_batcher(graph, test, max_batch_size=8, max_delay_s=0.5))
    assert graph.batches[0] == 7


class ThreadRecordingGraph(CountingGraph):
    def __init__(self) -> None:
        super().__init__()
        self.threads: list[str] = []

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        import threading

        self.threads.append(threading.current_thread().name)
        return super().run(inputs)


@pytest.mark.parametrize(("inline_max_s", "inline_expected"), [(1.0, True), (0.0, False)])
def test_cheap_graphs_run_on_the_event_loop_and_others_on_the_inference_thread(inline_max_s, inline_expected) -> None:
    import threading

    graph = ThreadRecordingGraph()

    async def test(batcher: Batcher) -> None:
        for i in range(4):
            (probs,) = await batcher.run(rows(2, seed=i))
            assert probs.shape == (2, 64)

    asyncio.run(with_batcher(graph, test, inline_max_s=inline_max_s))
    loop_thread = threading.main_thread().name
    assert graph.threads[0] != loop_thread  # the first run is measured on the thread
    assert all((t == loop_thread) == inline_expected for t in graph.threads[1:])


def test_a_cheap_graph_runs_a_request_at_once_when_nothing_is_queued() -> None:
    """Past its first (measured) run, a cheap graph runs a request on the spot: no queue, no
    hand-off to the worker; each request still gets its own, correct rows."""
    graph = CountingGraph()
    requests = [rows(1 + i % 3, seed=i) for i in range(20)]

    async def test(batcher: Batcher) -> None:
        await batcher.run(rows(1, seed=99))  # measured on the thread
        results = await asyncio.gather(*(batcher.run(r) for r in requests))
        for got, request in zip(results, requests, strict=True):
            np.testing.assert_allclose(got[0], graph.inner.run(request)[0], atol=1e-5)
        assert batcher._queued_rows == 0

    asyncio.run(with_batcher(graph, test, inline_max_s=1.0))
    assert graph.batches == [1] + [len(r["z"]) for r in requests]  # one run per request, in order


# ---- over real HTTP -------------------------------------------------------------------------


async def concurrent_generate(url: str, count: int, concurrency: int = 64) -> list[dict]:
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        semaphore = asyncio.Semaphore(concurrency)

        async def one(i: int) -> dict:
            async with semaphore:
                body = {"model": "digits-cvae", "n": 1, "label": str(i % 10), "seed": i}
                response = await client.post("/generate", json=body)
                assert response.status_code == 200, response.text
                return response.json()

        return await asyncio.gather(*(one(i) for i in range(count)))


def test_live_server_batches_concurrent_requests_and_matches_unbatched(live_server) -> None:
    # the digits decoder is cheap enough to run at once whenever nothing is queued: make it use the queue
    batched = live_server(batching="on", max_batch_delay_ms=20, inline_max_ms=0)
    unbatched = live_server(batching="off")
    results_on = asyncio.run(concurrent_generate(batched.url, 256))
    results_off = asyncio.run(concurrent_generate(unbatched.url, 256))
    for a, b in zip(results_on, results_off, strict=True):
        np.testing.assert_allclose(a["samples"], b["samples"], atol=1e-5)

    def batches(server) -> tuple[float, float]:
        """(all runs, runs of a single row) of the digits-cvae decoder, from the batch-size histogram."""
        text = httpx.get(server.url + "/metrics").text
        labels = {"model": "digits-cvae", "version": "1", "graph": "decoder"}
        total = metric_value(text, "genserve_batch_size_rows_count", **labels)
        return total, metric_value(text, "genserve_batch_size_rows_bucket", le="1.0", **labels)

    total, single = batches(batched)
    assert single < total < 256  # some runs carried rows of several requests
    assert batches(unbatched) == (256, 256)


def test_metrics_add_up_over_two_workers(live_server) -> None:
    server = live_server(workers=2)
    asyncio.run(concurrent_generate(server.url, 40, concurrency=8))
    for _ in range(4):  # successive scrapes may land on either worker: each must see the total
        text = httpx.get(server.url + "/metrics").text
        served = metric_value(text, "genserve_requests_total", endpoint="/generate", status="200")
        assert served == 40
        assert metric_value(text, "genserve_model_loaded", model="digits-cvae") == 1
