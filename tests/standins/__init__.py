"""Stand-ins for services that cannot run here (Splunk HEC, Datadog intake, Elasticsearch, webhook
receivers): small real HTTP servers on loopback that follow the documented wire contracts strictly,
record what they accepted, and can inject faults; `in_forked_child` runs work (`export_in_forked_child`
an export) in a real forked child."""

from __future__ import annotations

import json
import os
import select
from collections.abc import Callable, Sequence
from typing import Any


def in_forked_child(work: Callable[[], dict[str, Any]], *, timeout: float = 60.0) -> dict[str, Any]:
    """Fork; the child runs `work()` (as a gunicorn worker forked from a `--preload` master would) and exits
    with os._exit. Returns the dict `work` gave, with the child's "pid" and "exit_code" (or "error")."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            os.close(r)
            info = {"pid": os.getpid(), **work()}
            os.write(w, json.dumps(info).encode())
            code = 0
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, which fails the test
            os.write(w, json.dumps({"error": repr(exc)}).encode())
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    while True:
        ready, _, _ = select.select([r], [], [], timeout)
        if not ready:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            os.close(r)
            raise TimeoutError(f"the forked child did not finish within {timeout}s")
        data = os.read(r, 65536)
        if not data:
            break
        chunks.append(data)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    info = json.loads(b"".join(chunks) or b"{}")
    info["exit_code"] = os.waitstatus_to_exitcode(status)
    return info


def export_in_forked_child(exporter: Any, batch: Sequence[Any], *, timeout: float = 60.0) -> dict[str, Any]:
    """In a forked child, export `batch` through `exporter`. Returns what the child saw: its pid, the export
    result's name, last_rejected, and whether its `session` is another object than the parent's."""
    parent_session = getattr(exporter, "session", None)

    def work() -> dict[str, Any]:
        result = exporter.export(batch)
        info = {"result": result.name, "last_rejected": list(exporter.last_rejected),
                "fresh_session": getattr(exporter, "session", None) is not parent_session}
        exporter.force_flush()
        return info

    return in_forked_child(work, timeout=timeout)
