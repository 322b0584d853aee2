"""Lifecycle: SIGTERM/SIGINT seal the stream without an application handler, in plain processes and real servers.

Every test runs real processes: a Python script, gunicorn (2 sync workers, with and without
--preload) and uvicorn (--workers 2) on loopback, each app emitting audit events per request
through `otel_audit.configure(<yaml>)` (signing + file exporter). The server is stopped with
SIGTERM, as systemd, Docker and Kubernetes stop it, and `otel-audit verify` must then prove
every stream sealed clean, with every request's event present.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import Archive, attr_value, child_env

VENV_BIN = Path(sys.executable).parent


def _config(tmp: Path, keys_dir: Path) -> Path:
    cfg = tmp / "audit.yaml"
    cfg.write_text(textwrap.dedent(f"""\
        resource: {{service.name: lifecycle-tests}}
        processors:
          signing: {{keys_dir: {json.dumps(str(keys_dir))}, state_dir: {json.dumps(str(tmp / "state"))},
                     checkpoint_interval: 30s}}
        exporters:
          file: {{path: "${{env:AUDIT_FILE}}", fsync: never}}
        service:
          pipelines:
            logs/audit: {{processors: [signing], exporters: [file]}}
        """))
    (tmp / "archive").mkdir(exist_ok=True)
    return cfg


# Each process writes its own archive file, so that processes started independently never share one
# (the file exporter sees to that by itself too: test_workers_share_one_rotating_archive_path).
_APP_HEAD = """\
import os, sys
os.environ["AUDIT_FILE"] = os.path.join({archive!r}, f"audit-{{os.getpid()}}.jsonl")
import otel_audit
audit = otel_audit.configure({cfg!r})
"""

_WSGI_APP = """
def app(environ, start_response):
    n = environ.get("QUERY_STRING", "").partition("=")[2]
    audit.logger.login_succeeded(f"req-{n}", client_address="127.0.0.1")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]
"""

_ASGI_APP = """
async def app(scope, receive, send):
    assert scope["type"] == "http"
    n = scope.get("query_string", b"").decode().partition("=")[2]
    audit.logger.login_succeeded(f"req-{n}", client_address="127.0.0.1")
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": str(os.getpid()).encode()})
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(port: int, n: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/?n={n}", timeout=10) as r:
        assert r.status == 200
        return int(r.read())


def _wait_ready(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"server did not listen on {port}: {log.read_text()}")


def _verify_cli(keys_dir: Path, folder: Path) -> tuple[int, dict[str, Any], str]:
    proc = subprocess.run(
        [str(VENV_BIN / "otel-audit"), "verify", "--keys", str(keys_dir), "--format", "json", "--no-progress",
         str(folder)],
        capture_output=True, text=True, timeout=120,
    )
    text = subprocess.run(
        [str(VENV_BIN / "otel-audit"), "verify", "--keys", str(keys_dir), "--no-progress", str(folder)],
        capture_output=True, text=True, timeout=120,
    ).stdout
    return proc.returncode, orjson.loads(proc.stdout), text


def _requests_seen(folder: Path) -> list[str]:
    return sorted(
        str(attr_value(r, "user.id")) for f in folder.glob("*.jsonl") for r in Archive.load(f).records()
        if r.get("eventName") == "authentication.login.succeeded"
    )


def _assert_sealed_clean(doc: dict[str, Any], text: str, log: str = "") -> None:
    assert doc["result"] == "verified", text + log
    for s in doc["streams"]:
        assert s["status"] == "verified" and s["state"] == "closed", text
        assert s["unsealed"] == [] and s["missing"] == [] and s["conflicting"] == [], text
        assert not any("crash" in w or "unsealed" in w for w in s["warnings"]), text
    assert "crash" not in text


def _serve(cmd: list[str], tmp: Path, port: int, n: int, workers: int = 1) -> tuple[set[int], str, int]:
    """Start the server, send n requests (more, up to 30 s, until `workers` processes have answered: a worker
    still starting on a loaded machine is not what these tests are about), SIGTERM it; the worker pids that
    answered, the server log and the number of requests sent."""
    log = tmp / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=child_env(), cwd=tmp)
    try:
        _wait_ready(proc, port, log)
        pids = {_get(port, i) for i in range(n)}
        deadline = time.monotonic() + 30
        while len(pids) < workers and time.monotonic() < deadline:
            pids.add(_get(port, n))
            n += 1
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    return pids, log.read_text(), n


def _server_case(tmp: Path, keys_dir: Path, app_src: str, cmd: list[str], port: int, n: int = 30,
                 workers: int = 2) -> dict[str, Any]:
    cfg = _config(tmp, keys_dir)
    (tmp / "app.py").write_text(_APP_HEAD.format(archive=str(tmp / "archive"), cfg=str(cfg)) + app_src)
    pids, log, n = _serve(cmd, tmp, port, n, workers)
    code, doc, text = _verify_cli(keys_dir, tmp / "archive")
    assert code == 0, text + log
    _assert_sealed_clean(doc, text, log)
    assert _requests_seen(tmp / "archive") == sorted(f"req-{i}" for i in range(n))
    streams = doc["streams"]
    by_pid: dict[int, list[str]] = {}
    for s in streams:
        by_pid.setdefault(int(s["producer"]["process.pid"]), []).append(s["stream_id"])
    assert all(len(v) == 1 for v in by_pid.values()), by_pid  # one stream per process
    assert pids <= set(by_pid), (pids, by_pid)
    doc["log"] = log
    return doc


def test_gunicorn_workers_without_preload(tmp_path: Path, keys_dir: Path) -> None:
    """Two gunicorn workers sharing one config each get their own stream (and state slot when alive together);
    SIGTERM seals both."""
    port = _free_port()
    doc = _server_case(tmp_path, keys_dir, _WSGI_APP,
                       [str(VENV_BIN / "gunicorn"), "-w", "2", "-b", f"127.0.0.1:{port}", "--chdir", str(tmp_path),
                        "--graceful-timeout", "20", "app:app"], port)
    assert len(doc["streams"]) == 2
    # gunicorn 27 may load a worker's app late (even at its stop); a worker alive while the other
    # holds state_dir takes worker-1, one starting after the other stopped follows it in state_dir
    slots = sorted(p.parent.name for p in (tmp_path / "state").rglob("state.json"))
    linked = [s for s in doc["streams"] if s["predecessor"]]
    assert slots == ["state", "worker-1"] or (slots == ["state"] and len(linked) == 1), (slots, doc["log"])


def test_gunicorn_workers_with_preload(tmp_path: Path, keys_dir: Path) -> None:
    """With --preload the master's stream is the parent of each forked worker's stream;
    SIGTERM seals all three clean."""
    port = _free_port()
    doc = _server_case(tmp_path, keys_dir, _WSGI_APP,
                       [str(VENV_BIN / "gunicorn"), "-w", "2", "-b", f"127.0.0.1:{port}", "--chdir", str(tmp_path),
                        "--graceful-timeout", "20", "--preload", "app:app"], port)
    streams = doc["streams"]
    masters = [s for s in streams if s["parent"] is None]
    assert len(streams) == 3 and len(masters) == 1, doc["log"]
    kids = [s for s in streams if s["parent"] == masters[0]["stream_id"]]
    assert len(kids) == 2 and sorted(masters[0]["children"]) == sorted(k["stream_id"] for k in kids)


def test_uvicorn_workers(tmp_path: Path, keys_dir: Path) -> None:
    """uvicorn --workers 2, which re-raises SIGTERM after its graceful stop,
    still ends with both worker streams sealed clean."""
    port = _free_port()
    doc = _server_case(tmp_path, keys_dir, _ASGI_APP,
                       [str(VENV_BIN / "uvicorn"), "app:app", "--workers", "2", "--host", "127.0.0.1", "--port",
                        str(port), "--app-dir", str(tmp_path), "--lifespan", "off"], port)
    assert len(doc["streams"]) == 2


@pytest.mark.parametrize("server", ["gunicorn", "uvicorn"])
def test_workers_share_one_rotating_archive_path(tmp_path: Path, keys_dir: Path, server: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers started apart (gunicorn without --preload, uvicorn --workers) on one config whose file exporter
    rotates one path: one writes audit.jsonl, the other its own audit.<pid>.jsonl; nothing is lost, all verify."""
    port = _free_port()
    archive = tmp_path / "archive"
    cfg = _config(tmp_path, keys_dir)
    monkeypatch.setenv("AUDIT_FILE", str(archive / "audit.jsonl"))  # one path for every worker
    # small batches at once, so that both workers write (and hold their files) from their first moments
    cfg.write_text(cfg.read_text().replace("fsync: never}", "fsync: never, rotation: {max_megabytes: 0.004}, "
                                           "batch: {flush_timeout: 20ms, max_size: 4}}"))
    app = _ASGI_APP if server == "uvicorn" else _WSGI_APP
    (tmp_path / "app.py").write_text(f"import os\nimport otel_audit\naudit = otel_audit.configure({str(cfg)!r})\n"
                                     + app)
    cmd = ([str(VENV_BIN / "gunicorn"), "-w", "2", "-b", f"127.0.0.1:{port}", "--chdir", str(tmp_path),
            "--graceful-timeout", "20", "app:app"] if server == "gunicorn" else
           [str(VENV_BIN / "uvicorn"), "app:app", "--workers", "2", "--host", "127.0.0.1", "--port", str(port),
            "--app-dir", str(tmp_path), "--lifespan", "off"])
    pids, log, n = _serve(cmd, tmp_path, port, 80, workers=2)
    code, doc, text = _verify_cli(keys_dir, archive)
    assert code == 0, text + log
    _assert_sealed_clean(doc, text, log)
    assert _requests_seen(archive) == sorted(f"req-{i}" for i in range(n))
    assert len(pids) == 2 and len(doc["streams"]) == 2 and "cannot write" not in log, log
    names = sorted(p.name for p in archive.glob("*.jsonl"))
    other = [int(m[1]) for n in names if (m := re.fullmatch(r"audit\.(\d+)\.jsonl", n))]
    assert "audit.jsonl" in names and len(other) == 1 and other[0] in pids, names
    assert "is being written by another process" in log, log
    assert any(re.fullmatch(r"audit-[-0-9T.]+\.jsonl", n) for n in names), names  # each rotated its own
    assert any(re.fullmatch(rf"audit\.{other[0]}-[-0-9T.]+\.jsonl", n) for n in names), names


# -- plain processes --------------------------------------------------------------------------------

_SCRIPT = """\
import os, signal, sys, time
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from otel_audit.exporters.file import FileLogRecordExporter
from otel_audit.processors.signing import SigningProcessor
MODE = sys.argv[1]
flag = []
if MODE == "app_handler":
    signal.signal(signal.SIGTERM, lambda s, f: (print("app handler ran", flush=True), flag.append(s)))
elif MODE == "ignored":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
provider = LoggerProvider()
provider.add_log_record_processor(SigningProcessor({keys!r}, state_dir={state!r}, checkpoint_interval=3600,
    downstream=SimpleLogRecordProcessor(FileLogRecordExporter({archive!r}, fsync="never"))))
logger = provider.get_logger("script")
for i in range(5):
    logger.emit(body=f"event {{i}}", event_name="config.changed")
print("ready", flush=True)
if MODE == "busy":  # emit as fast as it can until stopped
    i = 5
    while True:
        logger.emit(body=f"event {{i}}", event_name="config.changed")
        i += 1
if MODE == "blocked":  # the main thread waits in a C call; the signal is taken by another thread
    import multiprocessing, threading
    lock = multiprocessing.Lock()
    lock.acquire()
    def other():
        time.sleep(0.3)
        with open(os.devnull, "w"):
            pass
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
        time.sleep(60)
    threading.Thread(target=other, daemon=True).start()
    lock.acquire()  # sem_wait: only a signal sent to this thread interrupts it
    print("the wait ended without the signal", flush=True)
    sys.exit(3)
deadline = time.monotonic() + 30
while not flag and time.monotonic() < deadline:
    time.sleep(0.02)
print("left the loop", flush=True)
"""


def _script(tmp: Path, keys_dir: Path, mode: str) -> subprocess.Popen[str]:
    src = tmp / "producer.py"
    src.write_text(_SCRIPT.format(keys=str(keys_dir), state=str(tmp / "state"), archive=str(tmp / "audit.jsonl")))
    proc = subprocess.Popen([sys.executable, str(src), mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=child_env())
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", (
        proc.stderr.read() if proc.stderr else ""
    )
    return proc


def _verify_file(keys_dir: Path, path: Path) -> dict[str, Any]:
    code, doc, text = _verify_cli(keys_dir, path)
    assert code == 0, text
    _assert_sealed_clean(doc, text)
    return doc


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_without_any_handler_seals(tmp_path: Path, keys_dir: Path, sig: signal.Signals) -> None:
    """A process with no handler of its own, stopped by SIGTERM or SIGINT,
    exits through atexit with its stream sealed clean."""
    proc = _script(tmp_path, keys_dir, "plain")
    time.sleep(0.2)
    proc.send_signal(sig)
    proc.wait(timeout=30)
    # SIGTERM: SystemExit(143); SIGINT: KeyboardInterrupt, after which Python ends by the signal
    assert proc.returncode == (128 + sig if sig == signal.SIGTERM else -sig), proc.stderr.read()  # type: ignore[union-attr]
    doc = _verify_file(keys_dir, tmp_path / "audit.jsonl")
    (s,) = doc["streams"]
    assert s["events"] == 5


def test_signal_chains_to_the_application_handler(tmp_path: Path, keys_dir: Path) -> None:
    """An application's own SIGTERM handler still runs (and its process carries on)
    and the normal exit seals the stream."""
    proc = _script(tmp_path, keys_dir, "app_handler")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "app handler ran" in out and "left the loop" in out
    _verify_file(keys_dir, tmp_path / "audit.jsonl")


def test_ignored_signal_stays_ignored(tmp_path: Path, keys_dir: Path) -> None:
    """A SIGTERM the application set to SIG_IGN stays ignored: the process keeps running."""
    proc = _script(tmp_path, keys_dir, "ignored")
    try:
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_a_signal_taken_by_another_thread_while_the_main_thread_blocks_still_stops_it(
        tmp_path: Path, keys_dir: Path) -> None:
    """The C handler of a signal may run in any thread that does not block it, and it interrupts nothing
    there: a main thread waiting in a C call (a pool worker taking its queue's lock when Pool.terminate()
    sends SIGTERM, the signal arriving just before it blocks) would wait forever. The watchdog reads the
    wakeup fd and sends the signal again to the main thread: the process stops, its stream sealed."""
    proc = _script(tmp_path, keys_dir, "blocked")
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the process never stopped: the signal was lost\n{err}")
    assert proc.returncode == 143, (proc.returncode, out, err)
    assert "without the signal" not in out, out
    _verify_file(keys_dir, tmp_path / "audit.jsonl")


def test_signal_during_a_burst_of_emits_leaves_the_chain_whole(tmp_path: Path, keys_dir: Path) -> None:
    """SIGTERM arriving while the main thread emits as fast as it can never cuts a record:
    every seq is present and sealed."""
    for _ in range(3):
        proc = _script(tmp_path, keys_dir, "busy")
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        assert proc.returncode == 143, proc.stderr.read()  # type: ignore[union-attr]
    doc = _verify_file(keys_dir, tmp_path / "audit.jsonl")
    assert len(doc["streams"]) == 3
    assert all(s["broken_links"] == [] and s["sealed"] == s["records"] for s in doc["streams"])
    assert sum(1 for s in doc["streams"] if s["predecessor"]) == 2  # each restart names the one before


def test_handler_is_installed_once_and_chains(tmp_path: Path, keys_dir: Path) -> None:
    """In a fresh interpreter, the first SigningProcessor installs one handler per signal,
    keeping the previous one to chain to."""
    src = textwrap.dedent(f"""
        import signal
        from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor, InMemoryLogRecordExporter
        from otel_audit import lifecycle
        from otel_audit.processors.signing import SigningProcessor
        def mine(s, f): pass
        signal.signal(signal.SIGTERM, mine)
        a = SigningProcessor({str(keys_dir)!r}, downstream=SimpleLogRecordProcessor(InMemoryLogRecordExporter()))
        h = signal.getsignal(signal.SIGTERM)
        b = SigningProcessor({str(keys_dir)!r}, downstream=SimpleLogRecordProcessor(InMemoryLogRecordExporter()))
        assert signal.getsignal(signal.SIGTERM) is h and h is not mine
        assert lifecycle.previous_handler(signal.SIGTERM) is mine
        assert lifecycle.previous_handler(signal.SIGINT) is signal.default_int_handler
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", src], capture_output=True, text=True, timeout=60, env=child_env())
    assert out.stdout.strip() == "ok", out.stderr


_POOL_SCRIPT = """\
import multiprocessing as mp, os, sys
import otel_audit
audit = otel_audit.configure(sys.argv[1])

def work(x):
    audit.logger.login_succeeded(f"pool-{x}", client_address="203.0.113.7")
    return x

if __name__ == "__main__":
    for round in range(int(sys.argv[2])):
        # leaving the block terminates the pool at once: workers still starting get SIGTERM
        with mp.get_context("fork").Pool(2) as pool:
            assert sum(pool.map(work, range(20))) == 190
    audit.shutdown()
    print("done", flush=True)
"""


def test_a_fork_pool_terminated_while_its_workers_start_never_hangs(tmp_path: Path, keys_dir: Path) -> None:
    """multiprocessing fork pools left by their `with` block (Pool.terminate: SIGTERM to workers, some still
    starting their own stream) end every time instead of waiting forever for a worker; each worker's SIGTERM
    seals its stream, and every record a worker emitted is delivered (by the worker, or from its spool slot by
    the next process to take it)."""
    # with the durable spool, as recommended
    cfg = tmp_path / "audit.yaml"
    cfg.write_text(textwrap.dedent(f"""\
        resource: {{service.name: lifecycle-tests}}
        processors:
          signing: {{keys_dir: {json.dumps(str(keys_dir))}, state_dir: {json.dumps(str(tmp_path / "state"))}}}
          delivery: {{directory: {json.dumps(str(tmp_path / "spool"))}, segment_size_mib: 1}}
        exporters:
          file: {{path: "${{env:AUDIT_FILE}}", fsync: never}}
        service:
          pipelines:
            logs/audit: {{processors: [signing, delivery], exporters: [file]}}
        """))
    (tmp_path / "archive").mkdir()
    script = tmp_path / "pool.py"
    script.write_text(_POOL_SCRIPT)
    env = {**child_env(), "AUDIT_FILE": str(tmp_path / "archive" / "audit.jsonl")}
    rounds = 25
    proc = subprocess.run([sys.executable, str(script), str(cfg), str(rounds)], capture_output=True, text=True,
                          timeout=240, env=env)
    assert proc.returncode == 0 and "done" in proc.stdout, proc.stderr[-3000:]
    # one more start takes over the slots the last workers left and delivers what they spooled
    again = subprocess.run([sys.executable, str(script), str(cfg), "0"], capture_output=True, text=True,
                           timeout=120, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    seen = _requests_seen(tmp_path / "archive")
    assert sorted(set(seen)) == sorted({f"pool-{x}" for x in range(20)}) and len(seen) >= rounds * 20
    code, doc, text = _verify_cli(keys_dir, tmp_path / "archive")
    for s in doc["streams"]:
        assert s["modified"] == [] and s["missing"] == [] and s["conflicting"] == [], text
        assert s["state"] == "closed" and s["problems"] == [], text
    assert code == 0, text


_POOL_NO_SPOOL = """\
import multiprocessing as mp, os, sys, time
import otel_audit
audit = otel_audit.configure(sys.argv[1])

def work(x):
    audit.logger.login_succeeded(f"pool-{x}", client_address="203.0.113.7")
    return os.getpid()

def sleeper():
    audit.logger.login_succeeded("sleeper", client_address="203.0.113.7")
    time.sleep(60)

if __name__ == "__main__":
    with mp.get_context("fork").Pool(2) as pool:  # __exit__ is Pool.terminate(): SIGTERM to each worker
        pool.map(work, range(20))
    p = mp.get_context("fork").Process(target=sleeper)
    p.start()
    time.sleep(1.0)
    p.terminate()
    p.join()
    print("sleeper exit", p.exitcode, flush=True)
    audit.shutdown()
"""


def test_fork_children_stopped_by_sigterm_hand_on_their_records_and_seal(tmp_path: Path, keys_dir: Path) -> None:
    """Without a spool (records wait in the SDK's batch queue), fork pool workers terminated by the pool's `with`
    block and a Process stopped with terminate() hand every record emitted before SIGTERM to the exporter and
    seal their streams: exit status 143 (SystemExit from the audit handler), all 21 events in the archive,
    every stream closed and verified without --partial."""
    cfg = _config(tmp_path, keys_dir)
    script = tmp_path / "pool.py"
    script.write_text(_POOL_NO_SPOOL)
    env = {**child_env(), "AUDIT_FILE": str(tmp_path / "archive" / "audit.jsonl")}
    proc = subprocess.run([sys.executable, str(script), str(cfg)], capture_output=True, text=True, timeout=180,
                          env=env)
    assert proc.returncode == 0 and "sleeper exit 143" in proc.stdout, proc.stdout + proc.stderr[-3000:]
    seen = _requests_seen(tmp_path / "archive")
    assert seen == sorted([f"pool-{x}" for x in range(20)] + ["sleeper"]), seen
    code, doc, text = _verify_cli(keys_dir, tmp_path / "archive")
    _assert_sealed_clean(doc, text)
    assert code == 0 and len(doc["streams"]) >= 3, text
