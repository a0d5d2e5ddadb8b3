"""Which backend ``slicebox up`` drives: ``local`` (this machine) or ``ray`` (a cluster).

The options are user input: a backend name not known, an address that is not
``auto`` or ``HOST:PORT``, or an option of the other backend is an ``InputError`` naming
the option. A cluster that does not answer is a ``SliceboxError`` naming ``--address``,
found out quickly (a TCP probe of the head's port with a short timeout) rather than after
Ray's own minute of retries. Ray is imported only here, and only for ``ray``.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slicebox.errors import InputError, SliceboxError
from slicebox.pool.model import Pool

BACKENDS = ("local", "ray")
DEFAULT_CONNECT_TIMEOUT = 5.0  # seconds to wait for the head's port to answer
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]{0,252}[A-Za-z0-9])?)$")


class BackendUnavailable(SliceboxError):
    """The chosen backend cannot run here now (no cluster at the address, Ray missing)."""


@dataclass(frozen=True)
class Address:
    """``auto`` (the cluster this machine belongs to, as Ray finds it) or host and port."""

    host: str | None
    port: int | None

    @property
    def auto(self) -> bool:
        return self.host is None

    def __str__(self) -> str:
        return "auto" if self.host is None else f"{self.host}:{self.port}"


def check_backend(name: str) -> str:
    value = name.strip().lower()
    if value not in BACKENDS:
        raise InputError(f"--backend: {name[:60]!r} is not a backend; valid: "
                         f"{', '.join(BACKENDS)}")
    return value


def parse_address(text: str) -> Address:
    """``auto`` or ``HOST:PORT`` (``[v6]:PORT`` for an IPv6 address); InputError otherwise."""
    value = text.strip()
    if value == "auto":
        return Address(None, None)
    host, sep, port = value.rpartition(":")
    if not sep or not _HOST.match(host) or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"--address: {text[:100]!r} is not 'auto' or HOST:PORT (the Ray "
                         "head's GCS address, e.g. 10.0.0.5:6379)")
    return Address(host, int(port))


def probe(address: Address, timeout: float = DEFAULT_CONNECT_TIMEOUT) -> None:
    """Raise ``BackendUnavailable`` naming ``--address`` unless something listens there."""
    if address.auto:
        return
    host = address.host.strip("[]") if address.host else ""
    try:
        with socket.create_connection((host, address.port), timeout=timeout):
            return
    except OSError as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise BackendUnavailable(
            f"--address {address}: no Ray cluster answers there ({why} after at most "
            f"{timeout:g}s); start one with `ray start --head` and pass the address it "
            "prints, or --address auto on a node of the cluster") from None


def ray_backend(state_dir: Path, address_text: str,
                connect_timeout: float = DEFAULT_CONNECT_TIMEOUT, **options: Any) -> Any:
    """A ``RayBackend`` attached to the cluster at ``address_text``, or a clear error."""
    address = parse_address(address_text)
    try:
        import ray  # noqa: F401 - only to say clearly that it is missing
    except ImportError:
        raise BackendUnavailable("--backend ray needs Ray: pip install 'slicebox[ray]'") \
            from None
    probe(address, connect_timeout)
    from slicebox.backends.ray.backend import RayBackend

    try:
        return RayBackend(state_dir, str(address), **options)
    except BackendUnavailable:
        raise
    except (SliceboxError, ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
        raise BackendUnavailable(f"--address {address}: could not attach to the Ray "
                                 f"cluster: {_one_line(exc)}") from None


def ray_pool(state_dir: Path, address_text: str,
             connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> Pool:
    """The pool the cluster's agents report now (``slicebox pool --backend ray``)."""
    backend = ray_backend(state_dir, address_text, connect_timeout)
    try:
        return Pool(tuple(backend.nodes()), "ray")
    finally:
        backend.close()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
