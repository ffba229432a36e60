"""One writer per workdir: ``workdir_lock(workdir)`` holds ``<workdir>/.lock`` for the whole job.

Local disk: an exclusive ``fcntl.flock`` on the lock file, which also holds the holder's host, pid and
start time. The kernel releases the lock when its process dies however it dies (kill -9 included), so a
lock file left by a killed run is simply taken over, with a warning naming the old holder; two runs that
start together cannot both win (the lock is taken in one system call). The file is never deleted, only
emptied on release: deleting it would let a late opener lock an orphaned inode while a third process
locks a new file. On a network file system flock works where the server supports locks (NFSv4, Lustre).

Object stores (``gs://``) have no lock primitive that ``etils.epath`` exposes, so there the lock is a
documented limitation: a lease object ``<workdir>/.lock`` records the holder and is refused while its
heartbeat is fresh, but two runs that start within the same second can both write it.
"""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator

from sembridge_jax.storage import as_path, is_remote

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
LEASE_TTL_S = 120  # an object-store lease whose heartbeat is older than this is stale
HEARTBEAT_S = 30


class WorkdirLockedError(OSError):
    """Another live process holds the workdir."""


def holder_record() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), "heartbeat": time.time()}


def _describe(holder: dict) -> str:
    return f"host {holder.get('host', '?')} pid {holder.get('pid', '?')} (started {holder.get('started', '?')})"


def _read(text: str) -> dict:
    try:
        record = json.loads(text)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def _locked_message(workdir, holder: dict) -> str:
    return (f"workdir {workdir} is in use by {_describe(holder)}: one run writes a workdir at a time. Wait for it "
            f"to finish, stop it, or use another --workdir")


@contextlib.contextmanager
def _local_lock(workdir) -> Iterator[None]:
    path = os.path.join(os.fspath(workdir), LOCK_FILE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(os.pread(fd, 4096, 0).decode(errors="replace"))
            raise WorkdirLockedError(_locked_message(workdir, holder)) from None
        previous = _read(os.pread(fd, 4096, 0).decode(errors="replace"))
        if previous:  # emptied on a clean release: a record means its holder died holding the lock
            log.warning("taking over the workdir lock %s left by %s, which is no longer running", path,
                        _describe(previous))
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder_record()).encode(), 0)
        os.fsync(fd)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the flock


@contextlib.contextmanager
def _lease(workdir) -> Iterator[None]:
    path = as_path(workdir) / LOCK_FILE
    if path.exists():
        holder = _read(path.read_text())
        if holder and time.time() - float(holder.get("heartbeat", 0)) < LEASE_TTL_S:
            raise WorkdirLockedError(_locked_message(workdir, holder) + f" (lease {path}; if that run is gone, "
                                     f"the lease expires {LEASE_TTL_S} s after its last heartbeat)")
        if holder:
            log.warning("taking over the expired workdir lease %s of %s", path, _describe(holder))
    record = holder_record()
    path.write_text(json.dumps(record))
    stop = threading.Event()

    def beat():
        while not stop.wait(HEARTBEAT_S):
            with contextlib.suppress(Exception):  # a missed heartbeat only shortens the lease
                path.write_text(json.dumps(dict(record, heartbeat=time.time())))

    thread = threading.Thread(target=beat, name="workdir-lease", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        with contextlib.suppress(Exception):
            path.unlink()


def workdir_lock(workdir) -> contextlib.AbstractContextManager[None]:
    """Hold ``workdir`` for this process (see the module docstring); raises WorkdirLockedError naming the
    holder's host and pid when another live process holds it."""
    return _lease(workdir) if is_remote(workdir) else _local_lock(as_path(workdir))
