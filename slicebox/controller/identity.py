"""Who a controller is, and whether the holder of a lease is still alive."""

from __future__ import annotations

import socket

import psutil


def controller_id() -> str:
    """host:pid:start-time, so a later controller can tell a dead holder from a live one."""
    me = psutil.Process()
    return f"{socket.gethostname()}:{me.pid}:{me.create_time():.2f}"


def holder_alive(holder: str) -> bool:
    host, _, rest = holder.partition(":")
    pid, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True  # cannot look from here: wait for its lease to expire
    try:
        proc = psutil.Process(int(pid))
        return (proc.status() != psutil.STATUS_ZOMBIE
                and f"{proc.create_time():.2f}" == started)
    except psutil.Error:
        return False
