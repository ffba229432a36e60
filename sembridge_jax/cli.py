"""What every command line (train.py, evaluate.py, ``python -m sembridge_jax.bridge`` / ``.export``) shares:
one clear line per error and documented exit codes.

``run_cli(main)`` calls ``main(argv)`` and turns an exception into ``error: <message>`` on stderr and exit
status 1; the traceback is printed only with ``--debug`` (taken out of argv before ``main`` sees it) or
``SEMBRIDGE_DEBUG=1``. A full disk is reported by its cause, as the very last line, however deep in the
exception chain (an Orbax save error, a failed upload) it sits.
"""
from __future__ import annotations

import ctypes
import errno
import os
import sys
import traceback
from collections.abc import Callable, Sequence

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2  # argparse: a bad command line
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: checkpoint saved, rerun the same command to resume
EXIT_INTERRUPTED = 130  # Ctrl-C

EXIT_CODES = (f"exit status: {EXIT_OK} done; {EXIT_ERROR} error (one line 'error: ...'; --debug or SEMBRIDGE_DEBUG=1 "
              f"also prints the traceback); {EXIT_USAGE} bad command line; {EXIT_PREEMPTED} preempted "
              "(train.py: checkpoint saved, rerun the same command to resume)")

# Errors a user causes and fixes (bad config, data, paths, disk, diverged training): the message is enough.
USER_ERRORS = (ValueError, OSError, LookupError, ArithmeticError)


def debug_requested(argv: Sequence[str]) -> bool:
    return "--debug" in argv or os.environ.get("SEMBRIDGE_DEBUG", "") not in ("", "0")


def _chain(error: BaseException):
    """``error``, its causes/contexts and the members of exception groups, depth first."""
    seen, todo = set(), [error]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [e.__context__, e.__cause__, *getattr(e, "exceptions", ())]


def disk_full(error: BaseException) -> BaseException | None:
    """The 'No space left on device' error inside ``error``'s chain, or None."""
    for e in _chain(error):
        if (isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)) or "No space left on device" in str(e):
            return e
    return None


def error_line(error: BaseException) -> str:
    """The one line that reports ``error``."""
    full = disk_full(error)
    if full is not None:
        where = f" writing {full.filename}" if getattr(full, "filename", None) else ""
        return (f"error: disk full{where} ({full}); free space or use another --workdir, then rerun the same "
                "command: it resumes from the last checkpoint")
    text = str(error).strip() or type(error).__name__
    if not isinstance(error, USER_ERRORS):
        text = f"{type(error).__name__}: {text}"
    hint = "" if isinstance(error, USER_ERRORS) else " (rerun with --debug for the traceback)"
    return f"error: {text}{hint}"


def keep_freed_memory(pad_bytes: int = 1 << 29) -> bool:
    """glibc only (else a no-op, False): keep freed memory in the process instead of handing it back to the
    kernel at every free (mallopt(3): M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, M_TOP_PAD). XLA's CPU runtime
    allocates and frees its large buffers on every call; with glibc's defaults each is an mmap / munmap pair
    whose pages the kernel zeroes again on first touch: system time was ~45 % of the connector job's CPU
    time, and this cut a bridge pass over 300 pages by 10 % (BENCHMARKS.md, "Connector route")."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    done = [libc.mallopt(opt, value) == 1 for opt, value in (
        (m_mmap_threshold, 1 << 30), (m_trim_threshold, 1 << 30), (m_top_pad, pad_bytes))]
    return all(done)


def run_cli(main: Callable[[list[str]], object], argv: Sequence[str] | None = None) -> int:
    """``main(argv)``'s exit status: its int result (anything else is 0), or 1 with one error line."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(argv)
    try:
        result = main([a for a in argv if a != "--debug"])
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except Exception as e:  # noqa: BLE001 - the one place that reports every error
        if debug:
            traceback.print_exc()
        sys.stdout.flush()
        print(error_line(e), file=sys.stderr, flush=True)
        return EXIT_ERROR
    return result if isinstance(result, int) and not isinstance(result, bool) else EXIT_OK
