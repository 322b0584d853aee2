"""How audit streams meet the end of their process: SIGTERM/SIGINT, interpreter exit, fork children.

A stream is sealed by an end checkpoint, written by `SigningProcessor.shutdown()`. This module
makes sure that happens on the stops a deployment actually uses, without the application
writing a handler:

* **Signals.** Once per process, from the main thread, the first `SigningProcessor` created
  installs a handler for SIGTERM and SIGINT that chains to whatever handler was there before:
  - the previous handler was SIG_DFL: raise `SystemExit(128 + signum)`, so the stack unwinds and
    the interpreter's exit path (atexit) seals every live stream;
  - it was a callable (gunicorn's and uvicorn's graceful stop, an application's own handler,
    Python's `default_int_handler`): call it. A server that, after its graceful stop, restores
    SIG_DFL and re-raises the signal at itself (uvicorn does) would die by the signal before
    atexit runs, so after such a handler returns the signal is blocked in the main thread: the
    re-raise stays pending, the process ends through the normal interpreter exit (status 0),
    and the stream is sealed. Signals sent from outside still arrive (another thread takes them);
  - it was SIG_IGN: nothing is installed, the signal stays ignored.
  The handler never seals: it runs in the main thread between two bytecodes, possibly while that
  thread holds the signing lock or is half-way through numbering a record. When the interrupted
  frame is inside the signing code, the handler only notes the signal; the processor acts on it
  as soon as the record in hand is fully handed on (or, when no record completes, the signal is
  sent again a few milliseconds later), so neither the chain nor the caller's record is cut in half.
* **Interpreter exit.** An atexit hook shuts down every live `SigningProcessor` not yet shut
  down (the SDK's `LoggerProvider(shutdown_on_exit=True)` does the same through the provider).
* **multiprocessing fork children** leave through `os._exit` after multiprocessing's own
  finalizers, never through atexit: in each such child a `multiprocessing.util.Finalize` seals.

No OpenTelemetry imports; the signing processor registers itself here.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import os
import signal
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from types import CodeType, FrameType
from typing import Any

_log = logging.getLogger(__name__)

SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)
RETRY_SECONDS = 0.02  # how soon a deferred signal is sent again when no record completes meanwhile
MAX_RETRIES = 500  # then it is handled wherever the main thread is (about 10 s of a stuck emit)

_live: weakref.WeakSet[Any] = weakref.WeakSet()  # SigningProcessors that seal at exit
_previous: dict[int, Any] = {}  # signal -> the handler ours chains to
_blocked: set[int] = set()  # signals blocked in the main thread after a server's graceful stop
_critical: set[CodeType] = set()  # code during which a signal must wait
_retries: dict[int, int] = {}
_lock = threading.Lock()
_installed_pid: int | None = None
_hooks_installed = False


class _Token:
    """A weak-referenceable key for multiprocessing's after-fork registry."""


_TOKEN = _Token()


def background_thread(target: Callable[..., Any], *, name: str, args: tuple[Any, ...] = ()) -> threading.Thread:
    """A daemon thread (not started) that never takes SIGTERM or SIGINT itself.

    A process-directed signal goes to any thread that does not block it. Were it one of ours, the
    main thread would not be interrupted: a main thread blocked in a C call (a multiprocessing pool
    worker waiting on its queue's lock, a lock acquire, a read) would never run the Python handler,
    and a signal meant to stop the process would be swallowed. Every background thread of the
    pipeline blocks both, so they reach the main thread."""

    def run() -> None:
        if hasattr(signal, "pthread_sigmask"):
            with contextlib.suppress(OSError, ValueError):
                signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        target(*args)

    return threading.Thread(target=run, name=name, daemon=True)


@contextlib.contextmanager
def signals_blocked() -> Iterator[None]:
    """SIGTERM and SIGINT blocked in the calling thread meanwhile: a thread started inside (a third party's
    worker, such as the SDK batch processor's) inherits the block and leaves the signals to the main thread."""
    old = None
    if hasattr(signal, "pthread_sigmask"):
        with contextlib.suppress(OSError, ValueError):
            old = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    try:
        yield
    finally:
        if old is not None:
            with contextlib.suppress(OSError, ValueError):
                signal.pthread_sigmask(signal.SIG_SETMASK, old)


def after_fork_in_child(obj: Any, method: str = "_after_fork_in_child") -> None:
    """Call `obj.<method>()` in the child after every os.fork(), holding only a weak reference to obj.

    The hook counts as signing code: a SIGTERM that arrives while a child is still starting (a pool
    terminated at once) is deferred and handled once the hooks are done. Raised inside an at-fork
    hook, the SystemExit would be printed and ignored by the interpreter, and the child would run on."""
    if not hasattr(os, "register_at_fork"):
        return
    ref = weakref.ref(obj)

    def _child_hook() -> None:
        target = ref()
        try:
            if target is not None:
                try:
                    getattr(target, method)()
                except Exception:  # a fork hook has nobody to raise to
                    _log.exception("%r could not prepare itself for the forked child", type(target).__name__)
        finally:
            if _last_child_hook and _last_child_hook[0] is _child_hook:
                _restore_mask()  # the last of our hooks: threads the hooks before made inherit the block

    _critical.add(_child_hook.__code__)
    os.register_at_fork(after_in_child=_child_hook)
    _last_child_hook[:] = [_child_hook]


def mark_critical(functions: Iterable[Callable[..., Any]]) -> None:
    """Code a signal must not interrupt with an exception (numbering and handing on a record)."""
    for f in functions:
        code = getattr(f, "__code__", None)
        if code is not None:
            _critical.add(code)


def register(processor: Any, *, handle_signals: bool = True) -> None:
    """Seal `processor` at interpreter exit and in multiprocessing children; with handle_signals,
    also install the SIGTERM/SIGINT handlers (once per process, main thread only)."""
    _ensure_exit_hooks()
    _live.add(processor)
    if handle_signals:
        install_signal_handlers()


def unregister(processor: Any) -> None:
    _live.discard(processor)


def seal_all(why: str = "interpreter exit") -> None:
    """Shut down every live, registered SigningProcessor not yet shut down."""
    for p in list(_live):
        if getattr(p, "is_shut_down", True):
            continue
        try:
            _log.debug("sealing audit stream %s at %s", getattr(p, "stream_id", "?"), why)
            p.shutdown()
        except Exception:  # noqa: BLE001 - one broken pipeline must not keep the others unsealed
            _log.exception("could not seal audit stream %s at %s", getattr(p, "stream_id", "?"), why)


def install_signal_handlers() -> bool:
    """Install the chaining SIGTERM/SIGINT handler; True if this process has it (now or before)."""
    global _installed_pid
    pid = os.getpid()
    if _installed_pid == pid:
        return True
    if threading.current_thread() is not threading.main_thread():
        _log.debug("audit signal handlers not installed: not in the main thread")
        return False
    with _lock:
        if _installed_pid == pid:
            return True
        for sig in SIGNALS:
            try:
                current = signal.getsignal(sig)
                if current is _handle or current == signal.SIG_IGN:
                    continue  # ours already (a fork child), or deliberately ignored
                _previous[int(sig)] = signal.SIG_DFL if current is None else current
                signal.signal(sig, _handle)
            except (ValueError, OSError) as exc:  # e.g. an embedded interpreter
                _log.debug("cannot install the audit handler for %s: %s", sig.name, exc)
        _installed_pid = pid
    if signal.getsignal(signal.SIGTERM) is _handle:
        start_watchdog()
    return True


def previous_handler(sig: int) -> Any:
    """The handler ours chains to for `sig` (for tests and diagnostics)."""
    return _previous.get(int(sig))


def _in_critical(frame: FrameType | None) -> bool:
    f = frame
    while f is not None:
        if f.f_code in _critical:
            return True
        f = f.f_back
    return False


pending: list[int] = []  # signals that arrived inside signing code, not handled yet (read per record)
_resenders: set[int] = set()


def _resend(signum: int) -> None:
    """Fallback for a signal deferred where no record is being emitted (e.g. during shutdown)."""
    try:
        while signum in pending:
            time.sleep(RETRY_SECONDS)
            if signum in pending:
                try:
                    os.kill(os.getpid(), signum)
                except OSError:
                    return
    finally:
        _resenders.discard(signum)


def deliver_pending(frame: FrameType | None) -> None:
    """Called by the signing processor right after a record was fully handed on: act on deferred signals."""
    for signum in list(pending):
        _handle(signum, frame)


_fork_call: list[Any] = []  # in a fork child: [the frame that called os.fork(), its instruction then]


def _in_fork_hooks(frame: FrameType | None) -> bool:
    """Is the main thread still running at-fork hooks (anyone's: the SDK's, ours, the application's)?
    The frame that called os.fork() stays at that call until every hook has run."""
    if not _fork_call:
        return False
    caller, lasti = _fork_call
    f = frame
    while f is not None:
        if f is caller:
            if f.f_lasti == lasti:
                return True
            break
        f = f.f_back
    _fork_call.clear()  # fork() has returned: hooks are over
    return False


def _in_mp_bootstrap(frame: FrameType | None) -> bool:
    """Is a multiprocessing child starting up or winding down around its run()? A SystemExit there skips
    multiprocessing's finalizers (ours seals the stream): before run() they are not armed yet, and
    raised among them it stops the rest. Only inside run() does the signal act at once."""
    import multiprocessing.process as mpp

    boot = mpp.BaseProcess._bootstrap.__code__  # type: ignore[attr-defined]  # private, not in typeshed
    callee = None
    f = frame
    while f is not None:
        if f.f_code is boot:
            return callee is None or callee.f_code.co_name != "run"
        callee = f
        f = f.f_back
    return False


def _must_wait(frame: FrameType | None) -> bool:
    return _in_critical(frame) or _in_fork_hooks(frame) or _in_mp_bootstrap(frame)


# -- the watchdog of lost signals ------------------------------------------------------------------
#
# A Python-level handler runs when the main thread next checks for signals. A signal that arrives just
# before the main thread enters a blocking C call (a pool worker taking its queue's lock: the moment
# Pool.terminate() sends SIGTERM, as a worker loops back for its next task) is noted by the C handler
# but interrupts nothing, and the main thread waits forever: the signal is lost, and with it the stop the
# default action would have made. The C handler also writes the signal's number to the wakeup fd, from
# whatever thread: a thread of ours reads it and, when the Python handler has not run for it, sends the
# signal again to the main thread, whose blocking call it then interrupts.
NUDGE_SECONDS = 0.05  # how long the main thread has to run the handler before the signal is sent again
MAX_NUDGES = 200
_RECENT = 1.0  # a handler run this long before the delivery was read counts as that delivery's
_wake: list[int] = []  # [read fd, write fd] of this process's watchdog pipe
_last_handled: dict[int, float] = {}  # signal -> monotonic time _handle last ran for it


def _close_wake() -> None:
    for fd in _wake:
        with contextlib.suppress(OSError):
            os.close(fd)
    _wake.clear()


def start_watchdog() -> bool:
    """Own the signal wakeup fd and watch it for lost SIGTERM/SIGINT (main thread; ours installed).
    False, leaving everything as it was, where the fd is somebody else's (asyncio's) or the platform
    lacks what it needs."""
    if not (hasattr(signal, "set_wakeup_fd") and hasattr(signal, "pthread_kill") and hasattr(os, "set_blocking")):
        return False
    if threading.current_thread() is not threading.main_thread():
        return False
    inherited = _wake[1] if _wake else -1
    try:
        r, w = os.pipe()
    except OSError:
        return False
    os.set_blocking(w, False)
    try:
        before = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    except (ValueError, OSError):
        before = -2
    if before not in (-1, inherited):  # another owner (asyncio's self-pipe): leave it theirs
        if before != -2:
            with contextlib.suppress(ValueError, OSError):
                signal.set_wakeup_fd(before)
        os.close(r)
        os.close(w)
        return False
    _close_wake()  # a fork child's copy of its parent's pipe
    _wake[:] = [r, w]
    background_thread(_watch, args=(r, threading.get_ident()), name="otel-audit-signal-watch").start()
    return True


def _watch(r: int, main: int) -> None:
    wanted = {int(s) for s in SIGNALS}
    while True:
        try:
            data = os.read(r, 256)
        except OSError:
            return
        if not data or not _wake or _wake[0] != r:
            return  # closed or replaced (a fork child's hook made its own)
        seen = time.monotonic()
        for signum in wanted.intersection(data):
            for _ in range(MAX_NUDGES):
                if _last_handled.get(signum, -math.inf) >= seen - _RECENT:
                    break
                time.sleep(NUDGE_SECONDS)
                if _last_handled.get(signum, -math.inf) >= seen - _RECENT:
                    break
                try:
                    signal.pthread_kill(main, signum)
                except (OSError, ValueError):
                    return  # the main thread is gone
                seen = time.monotonic()


def _handle(signum: int, frame: FrameType | None) -> None:
    _last_handled[signum] = time.monotonic()
    if _must_wait(frame) and _retries.get(signum, 0) < MAX_RETRIES:
        _retries[signum] = _retries.get(signum, 0) + 1
        if signum not in pending:
            pending.append(signum)
        if signum not in _resenders:
            _resenders.add(signum)
            background_thread(_resend, args=(signum,), name="otel-audit-signal").start()
        return
    _retries.pop(signum, None)
    while signum in pending:
        pending.remove(signum)
    prev = _previous.get(signum, signal.SIG_DFL)
    if callable(prev):
        prev(signum, frame)
        if prev is not signal.default_int_handler and hasattr(signal, "pthread_sigmask"):
            # The handler started a graceful stop. If it ends by re-raising the signal at itself
            # with SIG_DFL restored, that must not kill the process before atexit seals.
            signal.pthread_sigmask(signal.SIG_BLOCK, {signum})
            _blocked.add(signum)
        return
    if prev == signal.SIG_IGN:
        return
    raise SystemExit(128 + signum)


def _at_exit() -> None:
    seal_all("interpreter exit")


def _in_multiprocessing_child(_token: object) -> None:
    import multiprocessing.util as mpu

    # SIGTERM keeps our handler here too: Process.terminate() and Pool.terminate() (a pool's `with` block)
    # raise SystemExit(143) in the child's main thread, the stack unwinds, and multiprocessing's finalizers
    # (this one among them) seal the stream after handing on every record emitted before the signal. The
    # hang that an immediate death avoided (a worker blocked on a queue lock its parent holds) does not
    # come back: the lock wait is a sem_wait that SIGTERM interrupts in the main thread (our threads, and
    # the SDK's batch threads a fork re-creates, block the signal), and the handler acts inside run().
    mpu.Finalize(None, seal_all, args=("multiprocessing child exit",), exitpriority=50)


_mask_at_fork: list[Any] = []  # the forking thread's signal mask, while SIGTERM/SIGINT are held over a fork
_last_child_hook: list[Any] = []  # the at-fork hook registered last by after_fork_in_child: it restores the mask


def _before_fork() -> None:
    # A signal that reaches a new child before the interpreter has reinitialised itself there is
    # recorded and then cleared by that reinitialisation: with our handler installed, the child would
    # never learn of it (a pool terminated at once would wait forever for a worker). Held blocked over
    # the fork, such a signal stays pending in the kernel and arrives once the child unblocks it.
    if _installed_pid == os.getpid() and hasattr(signal, "pthread_sigmask"):
        try:
            _mask_at_fork[:] = [signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)]
        except (OSError, ValueError):
            _mask_at_fork.clear()


def _restore_mask() -> None:
    if _mask_at_fork:
        old = _mask_at_fork.pop()
        with contextlib.suppress(OSError, ValueError):
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _after_fork_in_child() -> None:
    # A signal raised into an at-fork hook is printed and ignored by the interpreter, and the child runs
    # on as if it never came: until fork() returns, signals wait (see _handle).
    caller = sys._getframe().f_back
    _fork_call[:] = [caller, caller.f_lasti] if caller is not None else []
    _retries.clear()
    pending.clear()
    _resenders.clear()
    _last_handled.clear()
    # the parent's watchdog pipe: the child's signals must not wake the parent's watchdog
    if _wake and not start_watchdog():
        with contextlib.suppress(ValueError, OSError):
            current = signal.set_wakeup_fd(-1)
            if current not in (-1, _wake[1]):
                signal.set_wakeup_fd(current)  # not ours: put it back
        _close_wake()
    # A signal held over the fork arrives once the mask is restored, and waits for the hooks (see _handle).
    # The mask stays blocked until the last hook of our processors has run: the threads that hooks before
    # it start (the SDK's batch processors re-create their worker thread in the child) inherit the block,
    # so a SIGTERM is taken by the main thread, whose blocking call (a pool worker's queue lock) it interrupts.
    if not _last_child_hook:
        _restore_mask()
    if _blocked and hasattr(signal, "pthread_sigmask"):
        with contextlib.suppress(ValueError, OSError):
            signal.pthread_sigmask(signal.SIG_UNBLOCK, set(_blocked))
    _blocked.clear()


def _ensure_exit_hooks() -> None:
    global _hooks_installed
    if _hooks_installed:
        return
    with _lock:
        if _hooks_installed:
            return
        atexit.register(_at_exit)
        import multiprocessing.util as mpu

        # multiprocessing clears its finalizers in a new fork child, then runs these
        mpu.register_after_fork(_TOKEN, _in_multiprocessing_child)
        _hooks_installed = True


# At import, so that in a fork child it runs before every processor's own at-fork hook: it forgets the
# parent's deferred signals first, and a signal that arrives while a processor starts the child's
# stream (a pool terminated at once) is deferred and delivered, not cleared afterwards.
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_restore_mask, after_in_child=_after_fork_in_child)

__all__ = ["SIGNALS", "install_signal_handlers", "mark_critical", "register", "seal_all", "unregister"]
