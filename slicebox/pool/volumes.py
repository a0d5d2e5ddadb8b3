"""Volumes of this machine: mount points with a storage tier, capacity and bandwidth.

The tier is guessed from what the kernel says (tmpfs, a network file system, an NVMe
device, ``queue/rotational``). Bandwidth is whatever a config declares; otherwise it is
measured once with a small write+read test and cached as JSON in the Slicebox home
directory, so discovery stays fast after the first run. Without a home directory (tests,
a dry run) nothing is measured and each tier's nominal numbers are used.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from slicebox.pool.model import Tier, Volume

log = logging.getLogger(__name__)

GIB = 1 << 30
MEASURE_BYTES = 32 << 20  # big enough to get past caches' first pages, small enough to be quick
CACHE_FILE = "volume-bandwidth.json"
NOMINAL_MBPS: dict[Tier, tuple[float, float]] = {  # (read, write), typical of each tier
    Tier.TMPFS: (10000.0, 8000.0),
    Tier.NVME: (3000.0, 2000.0),
    Tier.SSD: (500.0, 450.0),
    Tier.HDD: (150.0, 140.0),
    Tier.NETWORK: (100.0, 100.0),
}
LOCAL_FS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "f2fs", "vfat", "exfat",
                      "ntfs", "ntfs3", "fuseblk", "jfs", "bcachefs", "overlay"})
NETWORK_FS = frozenset({"nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "cephfs", "glusterfs",
                        "lustre", "gpfs", "beegfs", "fuse"})
# Mount points that hold the system, not data; /dev/shm is the one tmpfs worth using.
_SYSTEM_PREFIXES = ("/proc", "/sys", "/dev", "/run", "/snap", "/boot", "/var/lib/docker",
                    "/var/lib/containers", "/etc")


class VolumeDecl(BaseModel):
    """What a config may say about one mount point; anything left out is discovered."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
    tier: Tier | None = None
    read_mbps: float | None = Field(default=None, gt=0)
    write_mbps: float | None = Field(default=None, gt=0)
    capacity_gib: float | None = Field(default=None, gt=0)
    skip: bool = False


class VolumesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    volumes: dict[str, VolumeDecl] = Field(default_factory=dict)  # mount point -> declaration


def load_volumes_config(source: VolumesConfig | Mapping[str, Any] | str | Path | None
                        ) -> VolumesConfig:
    """A config from a YAML file (``volumes: {/data: {tier: nvme, read_mbps: 3000}}``) or data."""
    if source is None:
        return VolumesConfig()
    if isinstance(source, VolumesConfig):
        return source
    where = "volumes config"
    data: Any = source
    if isinstance(source, str | Path):
        where = str(source)
        try:
            data = yaml.safe_load(Path(source).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ValueError(f"{where}: cannot read: {exc}") from None
    try:
        return VolumesConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                             for e in exc.errors())
        raise ValueError(f"{where}: {problems}") from None


def guess_tier(device: str, fstype: str, mountpoint: str, sysfs: str | Path = "/sys") -> Tier:
    """The tier a mount most likely is, from its file system type and block device."""
    fstype = fstype.lower()
    if fstype == "tmpfs":
        return Tier.TMPFS
    if fstype in NETWORK_FS or fstype.startswith("fuse.") or ":" in device:
        return Tier.NETWORK
    name = os.path.basename(os.path.realpath(device)) if device.startswith("/") else device
    if name.startswith("nvme"):
        return Tier.NVME
    rotational = _rotational(name, Path(sysfs))
    if rotational is None:
        return Tier.SSD  # overlay roots and the like: no device to ask, most servers are flash
    return Tier.HDD if rotational else Tier.SSD


def _rotational(name: str, sysfs: Path) -> bool | None:
    block = sysfs / "class" / "block" / name
    if (block / "partition").exists():  # sda1 -> sda: the queue belongs to the whole disk
        name = Path(os.path.realpath(block)).parent.name
    try:
        return (sysfs / "block" / name / "queue" / "rotational").read_text().strip() == "1"
    except OSError:
        return None


def _is_candidate(part: Any) -> bool:
    fstype = part.fstype.lower()
    mount = part.mountpoint
    if mount != "/" and mount != "/dev/shm" and mount.startswith(_SYSTEM_PREFIXES):
        return False
    if fstype in NETWORK_FS or fstype.startswith("fuse."):
        return True  # shared: a source of data, never a staging target, so read-only is fine
    if "ro" in part.opts.split(","):
        return False  # a local volume is worth listing only as a place to stage to
    if fstype == "tmpfs":
        return mount == "/dev/shm"
    return fstype in LOCAL_FS and (part.device.startswith("/dev/") or fstype == "overlay")


def _volume_name(mount: str, taken: set[str]) -> str:
    base = {"/": "root", "/dev/shm": "shm"}.get(mount)
    if base is None:
        base = re.sub(r"[^A-Za-z0-9._-]", "-", mount.rstrip("/").rsplit("/", 1)[-1]) or "vol"
        base = base.lstrip("._-") or "vol"
    name, i = base, 2
    while name in taken:
        name, i = f"{base}-{i}", i + 1
    taken.add(name)
    return name


def discover_volumes(sysfs: str | Path = "/sys",
                     config: VolumesConfig | Mapping[str, Any] | str | Path | None = None,
                     home: str | Path | None = None, measure: bool = True) -> list[Volume]:
    """Usable mount points of this machine, one per device (bind mounts collapse)."""
    decl = load_volumes_config(config)
    by_device: dict[str, Any] = {}
    for part in psutil.disk_partitions(all=True):
        if not _is_candidate(part):
            continue
        key = part.mountpoint if part.fstype == "tmpfs" else part.device
        known = by_device.get(key)
        if known is None or len(part.mountpoint) < len(known.mountpoint):
            by_device[key] = part  # a bind mount of a subfolder says less than the root
    cache = _BandwidthCache(Path(home) / CACHE_FILE if home else None)
    taken: set[str] = set()
    volumes: list[Volume] = []
    for part in sorted(by_device.values(), key=lambda p: p.mountpoint):
        d = decl.volumes.get(part.mountpoint, VolumeDecl())
        if d.skip:
            continue
        try:
            usage = psutil.disk_usage(part.mountpoint)
        except OSError:
            continue
        tier = d.tier or guess_tier(part.device, part.fstype, part.mountpoint, sysfs)
        read, write = d.read_mbps, d.write_mbps
        if read is None or write is None:
            got = cache.get(part.device, part.mountpoint, tier, measure, home)
            read, write = read or got[0], write or got[1]
        name = _volume_name(part.mountpoint, taken) if d.name is None else d.name
        volumes.append(Volume(name, part.mountpoint, tier, d.capacity_gib or usage.total / GIB,
                              read, write, shared=tier is Tier.NETWORK))
    cache.save()
    return volumes


class _BandwidthCache:
    """Measured (read, write) MB/s per device and mount point, kept between runs."""

    def __init__(self, path: Path | None):
        self.path = path
        self.entries: dict[str, dict[str, float]] = {}
        self.dirty = False
        if path is not None and path.exists():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                self.entries = {k: v for k, v in data.get("volumes", {}).items()
                                if isinstance(v, dict) and {"read_mbps", "write_mbps"} <= set(v)}
            except (OSError, ValueError, AttributeError):
                log.warning("ignoring unreadable bandwidth cache %s; measuring again", path)

    def get(self, device: str, mount: str, tier: Tier, measure: bool,
            home: str | Path | None) -> tuple[float, float]:
        key = f"{device} {mount}"
        if key in self.entries:
            e = self.entries[key]
            return float(e["read_mbps"]), float(e["write_mbps"])
        if self.path is None or not measure:
            return NOMINAL_MBPS[tier]
        got = measure_bandwidth(mount, home)
        if got is None:
            return NOMINAL_MBPS[tier]
        self.entries[key] = {"read_mbps": got[0], "write_mbps": got[1], "measured_at": time.time()}
        self.dirty = True
        return got

    def save(self) -> None:
        if self.path is None or not self.dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"version": 1, "volumes": self.entries}, indent=1))
        os.replace(tmp, self.path)  # a crash mid-write must not leave half a cache


def measure_bandwidth(mount: str, home: str | Path | None = None,
                      size: int = MEASURE_BYTES) -> tuple[float, float] | None:
    """Write then read ``size`` bytes on ``mount``; (read, write) MB/s, or None if not writable.

    The file is written in the Slicebox home when that lives on this mount (so nothing
    lands in a user's folders), else in the mount point itself, and always removed.
    """
    where = mount
    if home is not None:
        try:
            if os.stat(home).st_dev == os.stat(mount).st_dev:
                where = str(home)
        except OSError:
            pass
    if not os.access(where, os.W_OK):
        return None
    block = os.urandom(1 << 20)
    try:
        with tempfile.NamedTemporaryFile(dir=where, prefix=".slicebox-bw-") as f:
            start = time.perf_counter()
            for _ in range(max(1, size // len(block))):
                f.write(block)
            f.flush()
            os.fsync(f.fileno())
            write_s = time.perf_counter() - start
            # Drop the pages we just wrote so the read comes from the device, not memory.
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            f.seek(0)
            start = time.perf_counter()
            while f.read(len(block)):
                pass
            read_s = time.perf_counter() - start
    except OSError as exc:
        log.info("could not measure %s: %s", mount, exc)
        return None
    mb = size / 1e6
    return round(mb / max(read_s, 1e-6), 1), round(mb / max(write_s, 1e-6), 1)
