"""Python workers under muster: metric files named by worker slot, and sd_notify helpers.

Import this module before anything creates a prometheus_client metric (first line of
the app module, or of ``gunicorn.conf.py``). It needs nothing but prometheus_client
(tested with 0.18.0 and 0.26.0) and the standard library.

Files by slot
    In multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set) prometheus_client names
    its files ``<type>_<pid>.db``, so every worker ever started leaves files behind.
    When ``MUSTER_WORKER_ID`` is set too (``muster run`` sets it to the worker's slot,
    ``0``, ``1``, ...), importing this module installs prometheus_client's documented
    hook for the file id, ``values.ValueClass = values.MultiProcessValue(
    process_identifier)``, with an identifier that is the slot (``w0``, ``w1``, ...,
    the ids muster's own Rust workers use). A replacement worker in the same slot
    reopens the slot's files, and prometheus_client reads each value back from the
    file before it adds to it: counters, histograms and summaries continue where the
    dead worker left them. The directory holds files per slot, not per pid.

One writer per file
    prometheus_client's files must have one writing process each. The slot is
    claimed by the first process that creates a metric after the import (not by
    the import itself), with a POSIX record lock on ``.muster-slot-w<k>.lock`` in
    the directory: the kernel drops it when the process dies, and a forked child
    does not inherit it. A process that cannot claim the slot (its forked child, a
    gunicorn master and its worker when the master created metrics first with
    ``--preload``, a second program started with the same id by mistake) keeps
    prometheus_client's pid-named files and logs a warning once; muster's
    supervisor folds pid-named files of dead processes into its archive. So a
    slot's files never have two writers.

Gauges
    ``live*`` gauges of a dead worker must vanish. Files are named by slot, so
    ``multiprocess.mark_process_dead(pid)`` finds nothing to remove; the slot's
    live-gauge files are removed when the slot is claimed again (the lock proves the
    previous holder dead), and muster's supervisor removes them when it reaps the
    worker (``mark_process_dead("w<k>")`` does the same by hand). The ``pid`` label
    of ``all``/``liveall`` gauges is the slot id (``pid="w0"``): one series per slot,
    continued by the replacement worker, instead of one per pid ever started. A
    replacement starts from the slot's last gauge values (prometheus_client reads
    them back), so ``inc``/``dec`` on a ``sum`` gauge keep the same merged total as
    pid-named files would; ``min``/``max``/``all``/``mostrecent`` gauges show the
    slot's value, which the new worker overwrites when it sets one (pid-named files
    would keep every dead worker's value).

Readiness and liveness (sd_notify)
    :func:`mark_ready`, :func:`watchdog`, :func:`notify` send datagrams to
    ``NOTIFY_SOCKET`` as systemd's ``sd_notify`` does; without ``NOTIFY_SOCKET``
    they do nothing and return False.
"""

import errno
import fcntl
import glob
import os
import re
import socket
import sys
import warnings

__all__ = [
    "install",
    "slot_id",
    "file_id",
    "notify",
    "mark_ready",
    "watchdog",
    "watchdog_interval",
    "stopping",
]

#: The gauge modes whose values vanish with their process (prometheus_client's list).
LIVE_GAUGE_MODES = ("liveall", "livemin", "livemax", "livesum", "livemostrecent")

_VALID_ID = re.compile(r"[A-Za-z0-9-]{1,64}")


class _State:
    """What this process claimed (reset in a forked child by the pid check)."""

    installed = False
    constructing = False
    pid = None
    file_id = None
    lock_fd = None
    warned = False


_state = _State()


def slot_id(environ=None):
    """The file id for ``MUSTER_WORKER_ID``, or None when it is unset or empty.

    A number ``k`` gives ``w<k>`` (the id muster's Rust workers use for slot ``k``);
    any other value must be 1-64 characters of ``[A-Za-z0-9-]`` with at least one
    that is not a digit (a number alone would read as a pid). Anything else raises
    ``ValueError``: an id with ``_`` would break the file names, one that looks like a
    pid would be compacted as a dead process's files.
    """
    environ = os.environ if environ is None else environ
    raw = environ.get("MUSTER_WORKER_ID", "")
    if raw == "":
        return None
    if raw.isdigit():
        return "w" + str(int(raw))
    if not _VALID_ID.fullmatch(raw):
        raise ValueError(
            "MUSTER_WORKER_ID=%r: use the slot number, or 1-64 characters of "
            "[A-Za-z0-9-] (no '_', which separates the parts of a file name)" % raw
        )
    return raw


def _multiproc_dir():
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get(
        "prometheus_multiproc_dir"
    )


def _warn(message):
    if not _state.warned:
        _state.warned = True
        print("muster_worker: " + message, file=sys.stderr, flush=True)


def _claim(directory, wanted):
    """Takes the slot's lock for this process; True if it is now ours."""
    path = os.path.join(directory, ".muster-slot-%s.lock" % wanted)
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as e:
        _warn("cannot open %s (%s); files stay named by pid" % (path, e))
        return False
    try:
        # POSIX record lock: per process, not inherited by fork, dropped at death.
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EAGAIN, errno.EACCES):
            _warn(
                "slot %s is held by another live process; this process (pid %d) "
                "keeps pid-named files" % (wanted, os.getpid())
            )
        else:
            _warn("cannot lock %s (%s); files stay named by pid" % (path, e))
        return False
    os.ftruncate(fd, 0)
    os.write(fd, b"%d\n" % os.getpid())
    _state.lock_fd = fd
    # The previous holder is dead (it held the lock until then): its live gauges go,
    # as prometheus_client's mark_process_dead would remove them.
    for mode in LIVE_GAUGE_MODES:
        try:
            os.remove(os.path.join(directory, "gauge_%s_%s.db" % (mode, wanted)))
        except FileNotFoundError:
            pass
    return True


def _identify():
    """prometheus_client's ``process_identifier``: the slot id, else the pid."""
    pid = os.getpid()
    if _state.constructing:
        # Called once by MultiProcessValue() itself: claim nothing yet, so that
        # a process that only imports this module (a gunicorn master reading its
        # config) leaves the slot to the worker that creates metrics. A value no
        # real process has makes the first metric call below claim.
        return "unclaimed"
    if pid == _state.pid:
        return _state.file_id
    # First call in this process, or the first one after a fork.
    if _state.lock_fd is not None and _state.pid != pid:
        # Inherited from the parent: not ours (POSIX locks are per process).
        os.close(_state.lock_fd)
        _state.lock_fd = None
    _state.pid = pid
    wanted = slot_id()
    directory = _multiproc_dir()
    if wanted is not None and directory and _claim(directory, wanted):
        _state.file_id = wanted
    else:
        _state.file_id = str(pid)
    return _state.file_id


def install():
    """Makes prometheus_client name this process's files by ``MUSTER_WORKER_ID``.

    Called on import. Does nothing (and returns False) unless both
    ``MUSTER_WORKER_ID`` and ``PROMETHEUS_MULTIPROC_DIR`` are set; returns True once
    installed. Raises ``ValueError`` for an unusable ``MUSTER_WORKER_ID``. Metrics
    created before this call keep their pid-named files (a warning says so).
    """
    if _state.installed:
        return True
    wanted = slot_id()
    directory = _multiproc_dir()
    if wanted is None:
        return False
    if not directory:
        warnings.warn(
            "MUSTER_WORKER_ID is set but PROMETHEUS_MULTIPROC_DIR is not: "
            "prometheus_client is not in multiprocess mode, nothing to name by slot",
            RuntimeWarning,
        )
        return False
    from prometheus_client import values

    early = glob.glob(os.path.join(directory, "*_%d.db" % os.getpid()))
    if early:
        _warn(
            "files named by this pid exist already (%s): were metrics created before "
            "muster_worker was imported? Those keep writing pid-named files; import "
            "muster_worker first" % ", ".join(sorted(os.path.basename(f) for f in early))
        )
    _state.constructing = True
    try:
        values.ValueClass = values.MultiProcessValue(process_identifier=_identify)
    finally:
        _state.constructing = False
    _state.installed = True
    return True


def file_id():
    """The id in this process's file names: the slot it holds, else its pid."""
    if not _state.installed:
        return str(os.getpid())
    return _identify()


def notify(*states):
    """Sends ``states`` (e.g. ``"READY=1"``, ``"STATUS=warming up"``) to ``NOTIFY_SOCKET``.

    Returns True if sent, False when ``NOTIFY_SOCKET`` is unset; raises ``OSError``
    if the socket is set but cannot be reached. A name starting with ``@`` is an
    abstract socket, as in systemd.
    """
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    message = "\n".join(states).encode("utf-8")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        s.connect(address)
        s.sendall(message)
    return True


def mark_ready():
    """Tells the supervisor this worker is ready to serve (``READY=1``)."""
    return notify("READY=1")


def stopping():
    """Tells the supervisor this worker is shutting down (``STOPPING=1``)."""
    return notify("STOPPING=1")


def watchdog():
    """Tells the supervisor this worker is alive (``WATCHDOG=1``).

    Call it at least every :func:`watchdog_interval` seconds when that is not None.
    """
    return notify("WATCHDOG=1")


def watchdog_interval():
    """Seconds between :func:`watchdog` calls the supervisor asks for, or None.

    Half of ``WATCHDOG_USEC`` (as systemd advises), when ``WATCHDOG_PID`` is unset or
    names this process.
    """
    usec = os.environ.get("WATCHDOG_USEC", "")
    owner = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if owner and owner != str(os.getpid()):
        return None
    return int(usec) / 2e6


install()
