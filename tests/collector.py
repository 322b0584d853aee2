"""Test harness for the stock OpenTelemetry Collector that collector-config/ describes.

`collector_binary()` builds the collector once per test session with
collector-config/build.sh (ocb, stock modules, cached outside the repository) and returns the
binary's path. `Collector` runs it as a real process on free loopback ports and stops it by
pid; `validate` runs the binary's own `validate` command on a config.

Ports reach a config through environment variables: `Collector(config, endpoints=("X",))`
picks a free loopback port for each name and sets X=127.0.0.1:<port>, which the config uses
as `${env:X}`. The harness itself adds, as a second --config, only what it must control: the
health_check endpoint it polls (so every config run here needs the `health_check` extension)
and no internal metrics server (its fixed port 8888 would collide between collectors).
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType

import yaml

REPO = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO / "collector-config"
BUILD_SCRIPT = CONFIG_DIR / "build.sh"
MANIFEST = CONFIG_DIR / "builder-config.yaml"

#: How long the first build may take (downloads every module, compiles on few cores).
BUILD_TIMEOUT_S = 3600.0


class CollectorError(RuntimeError):
    """The collector could not be built, started, or stopped as asked."""


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


@functools.cache
def collector_binary(manifest: Path = MANIFEST) -> Path:
    """Build (or find in the cache) the collector of `manifest`; once per session."""
    try:
        proc = subprocess.run(
            ["bash", str(BUILD_SCRIPT), str(manifest)],
            capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise CollectorError(f"{BUILD_SCRIPT} {manifest} did not finish in {BUILD_TIMEOUT_S:.0f}s") from e
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise CollectorError(
            f"{BUILD_SCRIPT} {manifest} failed (exit {proc.returncode}); its stderr ends with:\n{_tail(proc.stderr)}"
        )
    binary = Path(lines[-1])
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        raise CollectorError(f"{BUILD_SCRIPT} printed {binary}, which is not an executable file")
    return binary


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config_file(config: str | os.PathLike[str], scratch: Path) -> Path:
    """A config given as a path is used as is; YAML text is written to a scratch file."""
    if isinstance(config, os.PathLike) or ("\n" not in config and Path(config).is_file()):
        return Path(config)
    f = scratch / "config.yaml"
    f.write_text(str(config), encoding="utf-8")
    return f


def validate(
    config: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    *,
    extra_configs: Iterable[str | os.PathLike[str]] = (),
    binary: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `<collector> validate --config=<config> [--config=<extra> ...]`; never raises on failure.

    Extra configs are merged over the first one, as the collector merges repeated --config.
    """
    exe = binary or collector_binary()
    with tempfile.TemporaryDirectory(prefix="otelcol-validate-") as d:
        files = [_config_file(config, Path(d))]
        for i, extra in enumerate(extra_configs):
            sub = Path(d) / str(i)
            sub.mkdir()
            files.append(_config_file(extra, sub))
        return subprocess.run(
            [str(exe), "validate", *(f"--config={f}" for f in files)],
            capture_output=True, text=True, timeout=60, check=False,
            env={**os.environ, **(env or {})},
        )


def _require_health_check(path: Path) -> None:
    """The harness knows a collector is ready from health_check; fail early if it is missing."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise CollectorError(f"cannot read collector config {path}: {e}") from e
    service = doc.get("service") if isinstance(doc, dict) else None
    listed = service.get("extensions") if isinstance(service, dict) else None
    if not isinstance(listed, list) or "health_check" not in listed:
        raise CollectorError(
            f"{path}: service.extensions must include 'health_check' (an extensions.health_check "
            "block too): the harness waits for it to report the collector ready"
        )


class Collector:
    """One collector process on loopback, as a context manager.

    Args:
        config: a path to a YAML file, or the YAML text itself.
        env: extra environment variables for the process (the config's ${env:...}).
        endpoints: names of environment variables to set to a free 127.0.0.1:<port> each;
            kept across `kill()` / `start()` so that a restarted collector listens where
            its clients expect it.
        binary: the collector to run (default: `collector_binary()`).
        workdir: where its stderr log and scratch config go (default: a temporary folder).
        ready_timeout: seconds to wait for health_check to report ready.
        extra_configs: paths of overlays merged over `config` (`--config=config --config=extra ...`).
    """

    def __init__(
        self,
        config: str | os.PathLike[str],
        env: Mapping[str, str] | None = None,
        *,
        endpoints: Iterable[str] = (),
        binary: Path | None = None,
        workdir: str | os.PathLike[str] | None = None,
        ready_timeout: float = 30.0,
        extra_configs: Iterable[str | os.PathLike[str]] = (),
    ) -> None:
        self._tmp = None if workdir is not None else tempfile.TemporaryDirectory(prefix="otelcol-")
        self.workdir = Path(workdir) if workdir is not None else Path(self._tmp.name)  # type: ignore[union-attr]
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = _config_file(config, self.workdir)
        _require_health_check(self.config_path)
        #: merged over `config` in order, as the collector merges repeated --config (an overlay)
        self.extra_configs = [Path(c) for c in extra_configs]
        self.binary = binary or collector_binary()
        self.endpoints: dict[str, str] = {name: f"127.0.0.1:{free_port()}" for name in endpoints}
        self.health_port = free_port()
        self.env = {**os.environ, **(env or {}), **self.endpoints}
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / "collector.stderr.log"
        self.starts = 0

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> Collector:
        """Start the process and wait until health_check says it is ready."""
        if self.proc is not None and self.proc.poll() is None:
            raise CollectorError(f"collector pid {self.proc.pid} is already running")
        overlay = (
            f"yaml:extensions::health_check::endpoint: 127.0.0.1:{self.health_port}",
            "yaml:service::telemetry::metrics::level: none",
        )
        args = [str(self.binary), f"--config={self.config_path}", *(f"--config={c}" for c in self.extra_configs),
                *(f"--config={o}" for o in overlay)]
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n---- start #{self.starts}: {' '.join(args)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(args, stdout=log, stderr=log, env=self.env, cwd=self.workdir)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        assert self.proc is not None
        url = f"http://127.0.0.1:{self.health_port}/"
        deadline = time.monotonic() + self.ready_timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                raise CollectorError(
                    f"collector exited with status {code} before it was ready "
                    f"(config {self.config_path}); its log ends with:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=1.0) as resp:
                    if resp.status == 200:
                        return
                    last = f"HTTP {resp.status}"
            except urllib.error.HTTPError as e:  # 503 while starting
                last = f"HTTP {e.code}"
            except OSError as e:
                last = str(e)
            time.sleep(0.05)
        self.stop()
        raise CollectorError(
            f"collector not ready after {self.ready_timeout:.0f}s (health_check {url}: {last}; "
            f"config {self.config_path}); its log ends with:\n{self.log_tail()}"
        )

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait up to `timeout` seconds, then SIGKILL. Returns the exit status."""
        p = self.proc
        if p is None:
            return None
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
        return p.returncode

    def kill(self) -> None:
        """SIGKILL now, as a crash would: no shutdown, no flush."""
        p = self.proc
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait(10)

    # -- helpers -----------------------------------------------------------------------------------

    def endpoint(self, name: str) -> str:
        """host:port given to the config as ${env:name}."""
        return self.endpoints[name]

    def url(self, name: str, path: str = "") -> str:
        return f"http://{self.endpoints[name]}{path}"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_text(), lines)

    def __enter__(self) -> Collector:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
