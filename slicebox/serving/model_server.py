"""The reference inference model served over HTTP: ``python -m slicebox.serving.model_server``.

The model is the inference workload's digits ResNet (``bench/image.py``, as
``bench/inference.py`` serves it under LoadGen). Startup must take seconds, not the
minutes a full training run takes, so the model is either loaded from ``--weights`` or
trained for ``--train-seconds`` (and then saved to ``--weights`` when given, so the next
replica only loads it). Served with FastAPI on uvicorn:

- ``POST /predict``: ``{"images": [[64 floats in 0..1], ...]}`` (8x8 images, flattened),
  or ``{"count": N}`` for N samples of the held-out digits, or an empty body for one
  random sample. Answers ``{"predictions": [...], "correct": k | null}``.
- ``GET /health``: 200 once the model is loaded (the server only listens after that).
- ``GET /metrics``: requests, samples and seconds spent in the model (JSON).

torch uses as many threads as the cores this process may run on (``sched_getaffinity``),
unless ``--threads`` says otherwise; ``--cpus`` pins the process first (so a replica can
be started on its slice without ``taskset``). Inference runs one request at a time under
a lock: concurrent forward passes on the same cores would only compete for them, while
``/health`` stays answered on the event loop.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field

from slicebox.errors import InputError

if TYPE_CHECKING:
    import torch
    from fastapi import FastAPI

PORT_ENV: Final = "SLICEBOX_SERVICE_PORT"
MAX_IMAGES: Final = 1024  # per request: bounds the body and the time one request holds the model
IMAGE_PIXELS: Final = 64
DEFAULT_WIDTH: Final = 8  # the inference workload's quick width: a small, fast model
DEFAULT_TRAIN_SECONDS: Final = 2.0

Pixel = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Image = Annotated[list[Pixel], Field(min_length=IMAGE_PIXELS, max_length=IMAGE_PIXELS)]


class PredictRequest(BaseModel):
    """A batch of images, or a number of held-out samples to classify."""

    model_config = ConfigDict(extra="forbid", strict=True)

    images: Annotated[list[Image], Field(min_length=1, max_length=MAX_IMAGES)] | None = None
    count: Annotated[int, Field(ge=1, le=MAX_IMAGES)] | None = None


@dataclass
class ServedModel:
    """The model in eval mode, the held-out digits to sample from, and counters."""

    model: torch.nn.Module
    eval_images: torch.Tensor
    eval_labels: torch.Tensor
    accuracy: float
    threads: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: int = 0
    samples: int = 0
    busy_s: float = 0.0

    def predict(self, images: Sequence[Sequence[float]] | None, count: int) -> dict[str, Any]:
        import torch

        labels: torch.Tensor | None = None
        if images is not None:
            batch = torch.tensor(images, dtype=torch.float32).reshape(-1, 1, 8, 8)
        else:
            index = torch.randint(len(self.eval_images), (count,))
            batch, labels = self.eval_images[index], self.eval_labels[index]
        with self.lock:
            start = time.perf_counter()
            with torch.inference_mode():
                predicted = self.model(batch).argmax(dim=1)
            self.busy_s += time.perf_counter() - start
            self.requests += 1
            self.samples += len(batch)
        correct = None if labels is None else int((predicted == labels).sum())
        return {"predictions": predicted.tolist(), "correct": correct}


def resolve_port(port: int | None, environ: Mapping[str, str]) -> int:
    """``--port``, else ``SLICEBOX_SERVICE_PORT``; 1..65535 either way."""
    if port is None:
        text = environ.get(PORT_ENV)
        if text is None:
            raise InputError(f"no port: pass --port or set {PORT_ENV}")
        try:
            port = int(text)
        except ValueError:
            raise InputError(f"{PORT_ENV} must be a port number, got {text[:40]!r}") from None
    if not 1 <= port <= 65535:
        raise InputError(f"port must be in 1..65535, got {port}")
    return port


def parse_cpus(text: str) -> set[int]:
    """``0,2-3`` -> {0, 2, 3}: the cores to pin to."""
    cpus: set[int] = set()
    try:
        for part in text.split(","):
            low, _, high = part.strip().partition("-")
            cpus.update(range(int(low), int(high or low) + 1))
    except ValueError:
        raise InputError(f"--cpus must look like 0,2-3, got {text[:40]!r}") from None
    if not cpus or min(cpus) < 0 or len(cpus) > 4096:
        raise InputError(f"--cpus must name between 1 and 4096 cores >= 0, got {text[:40]!r}")
    return cpus


def load_model(weights: Path | None, train_seconds: float, width: int, threads: int,
               seed: int = 0) -> ServedModel:
    """The model from ``weights`` if that file exists, else trained for ``train_seconds``
    (and saved to ``weights`` when given)."""
    import torch
    from torch.nn import functional as F

    from slicebox.bench import image

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    x_train, y_train, x_eval, y_eval = image.load_digits_split()
    model = image.DigitsResNet(width)
    if weights is not None and weights.is_file():
        try:
            model.load_state_dict(torch.load(weights, weights_only=True))
        except (RuntimeError, OSError, ValueError) as exc:
            raise InputError(f"--weights {weights}: not this model's weights ({exc})") from None
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        deadline = time.monotonic() + train_seconds
        while time.monotonic() < deadline:
            for index in torch.randperm(len(x_train)).split(32):
                optimizer.zero_grad(set_to_none=True)
                F.cross_entropy(model(x_train[index]), y_train[index]).backward()
                optimizer.step()
        if weights is not None:  # written whole, then renamed: a reader never sees half
            weights.parent.mkdir(parents=True, exist_ok=True)
            partial = weights.with_name(f".{weights.name}.{os.getpid()}.tmp")
            torch.save(model.state_dict(), partial)
            partial.replace(weights)
    model.eval()
    with torch.inference_mode():
        accuracy = float((model(x_eval).argmax(dim=1) == y_eval).float().mean())
    return ServedModel(model, x_eval, y_eval, accuracy, threads)


def create_app(served: ServedModel) -> FastAPI:
    from fastapi import FastAPI

    app = FastAPI(title="slicebox model server", docs_url=None, redoc_url=None)

    @app.post("/predict")
    def predict(body: PredictRequest | None = None) -> dict[str, Any]:
        # A plain ``def``: FastAPI runs it on a worker thread, so the event loop (and
        # /health) stays free while the model runs.
        if body is not None and body.images is not None and body.count is not None:
            raise _bad_request("give either images or count, not both")
        if body is not None and body.images is not None:
            return served.predict(body.images, 0)
        return served.predict(None, body.count if body and body.count else 1)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "threads": served.threads,
                "cores": sorted(os.sched_getaffinity(0)), "accuracy": served.accuracy}

    @app.get("/metrics")
    async def metrics() -> dict[str, Any]:
        return {"requests": served.requests, "samples": served.samples,
                "busy_s": round(served.busy_s, 6)}

    return app


def _bad_request(message: str) -> Exception:
    from fastapi import HTTPException

    return HTTPException(status_code=422, detail=message)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m slicebox.serving.model_server",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None,
                        help=f"default: ${PORT_ENV}")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: the cores this process may use)")
    parser.add_argument("--cpus", default=None, help="pin to these cores first, e.g. 0,2-3")
    parser.add_argument("--weights", type=Path, default=None,
                        help="load the model's state from here; if absent, train and save it")
    parser.add_argument("--train-seconds", type=float, default=DEFAULT_TRAIN_SECONDS)
    parser.add_argument("--width", type=int, default=DEFAULT_WIDTH)
    parser.add_argument("--prepare-only", action="store_true",
                        help="load or train (saving --weights), then exit without serving")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        port = 0 if args.prepare_only else resolve_port(args.port, os.environ)
        if args.cpus is not None:
            os.sched_setaffinity(0, parse_cpus(args.cpus))
        threads = args.threads or len(os.sched_getaffinity(0))
        if not 1 <= threads <= 4096:
            raise InputError(f"--threads must be in 1..4096, got {threads}")
        if not 0.0 <= args.train_seconds <= 3600.0:
            raise InputError(f"--train-seconds must be in 0..3600, got {args.train_seconds}")
        if not 1 <= args.width <= 256:
            raise InputError(f"--width must be in 1..256, got {args.width}")
        served = load_model(args.weights, args.train_seconds, args.width, threads)
    except (InputError, OSError) as exc:
        print(f"model_server: {exc}", file=sys.stderr)
        return InputError.exit_code if isinstance(exc, InputError) else 1
    if args.prepare_only:
        print(f"model ready: accuracy {served.accuracy:.3f}")
        return 0
    import uvicorn

    uvicorn.run(create_app(served), host=args.host, port=port, log_level="warning",
                access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
