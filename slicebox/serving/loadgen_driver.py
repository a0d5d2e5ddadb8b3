"""Sizing's load from MLPerf LoadGen's Server scenario, sent to a replica over HTTP.

LoadGen schedules single-sample queries with Poisson inter-arrival times at the target
rate and measures each query from issue to completion; this module's system under test
turns each query into one ``POST`` to the replica (on an asyncio loop of its own, so
queries overlap as they arrive) and completes it when the answer comes back. The p99 is
LoadGen's own (read from its detail log, as ``bench/loadgen_run.py`` does). A step here
is far shorter than an MLPerf run, so LoadGen's verdict (early stopping wants thousands
of queries) is not used: the p99 and the failed requests are.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
from pathlib import Path
from typing import Any

from slicebox.bench import loadgen_run as lgr
from slicebox.serving.sizing import Driver, RatePoint

_SAMPLES = 1024  # LoadGen's sample library: indices only, every query sends the same body


def available() -> bool:
    return lgr.available()


class _HttpSUT:
    """LoadGen's system under test: each query is one HTTP request to ``url``."""

    def __init__(self, url: str, body: Any, timeout_s: float) -> None:
        self.url, self.body, self.timeout_s = url, body, timeout_s
        self.failed = 0
        self.answered = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="loadgen-http",
                                       daemon=True)
        self.thread.start()
        self.client = asyncio.run_coroutine_threadsafe(self._client(), self.loop).result()

    async def _client(self) -> Any:
        import httpx

        return httpx.AsyncClient(timeout=self.timeout_s, limits=httpx.Limits(
            max_connections=512, max_keepalive_connections=128))

    def issue(self, samples: list[Any]) -> None:  # called on LoadGen's thread
        for sample in samples:
            asyncio.run_coroutine_threadsafe(self._send(sample), self.loop)

    async def _send(self, sample: Any) -> None:
        import httpx

        try:
            response = await self.client.post(self.url, json=self.body)
            ok = response.status_code == 200
        except httpx.HTTPError:
            ok = False
        if ok:
            self.answered += 1
        else:
            self.failed += 1
        lgr.complete([sample])

    def flush(self) -> None:
        pass

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.client.aclose(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def server_point(body: Any, latency_bound_ms: float, timeout_s: float = 10.0) -> Driver:
    """A sizing driver: LoadGen Server at ``rate`` for ``seconds`` against ``url``."""
    import mlperf_loadgen as lg

    def run(url: str, rate: float, seconds: float) -> RatePoint:
        sut = _HttpSUT(url, body, timeout_s)
        settings = lg.TestSettings()
        settings.scenario = lg.TestScenario.Server
        settings.mode = lg.TestMode.PerformanceOnly
        settings.server_target_qps = rate
        settings.server_target_latency_ns = int(latency_bound_ms * 1e6)
        settings.min_duration_ms = int(seconds * 1000)
        settings.min_query_count = 1  # the duration sets the length of a sizing step
        try:
            with tempfile.TemporaryDirectory(prefix="slicebox-sizing-") as logdir:
                log_settings = lg.LogSettings()
                log_settings.log_output.outdir = logdir
                log_settings.log_output.copy_summary_to_stdout = False
                handle = lg.ConstructSUT(sut.issue, sut.flush)
                library = lg.ConstructQSL(_SAMPLES, _SAMPLES, lambda _: None, lambda _: None)
                try:
                    lg.StartTestWithLogSettings(handle, library, settings, log_settings)
                finally:
                    lg.DestroyQSL(library)
                    lg.DestroySUT(handle)
                results = lgr.read_detail_log(Path(logdir) / "mlperf_log_detail.txt")
        finally:
            sut.close()
        p99_ms = float(results.get("result_99.00_percentile_latency_ns", 0.0)) / 1e6
        return RatePoint(rate, p99_ms, sut.failed, sut.answered + sut.failed)

    return run
