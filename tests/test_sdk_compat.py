"""Private OpenTelemetry access lives in otel_audit._sdk_compat only (DESIGN: "Private SDK access lives in
one compatibility module"), and the compatibility functions work on the installed SDK.

The scan reads every module of otel_audit/, processors/ and exporters/ (the package's sources) with `ast`
and fails on, outside otel_audit/_sdk_compat.py:
  - an import of an opentelemetry module with an underscored component, unless it is one of the documented
    homes of an API (DOCUMENTED), and then only of names in that module's __all__;
  - an import of an underscored name from any opentelemetry module;
  - `x._name`, `getattr(x, "_name")` (and hasattr / setattr / delattr) where `_name` is a private name the
    installed opentelemetry packages define (read from their sources) or an enum internal such as
    `_value_`, unless `x` is `self` / `cls` of a class that does not derive from an OpenTelemetry class;
  - `self._name` in a class deriving from an OpenTelemetry class, where an OpenTelemetry class of its bases
    defines `_name` (overriding or calling the SDK's private hooks: `_configure`, `_export`, ...);
  - a string naming an underscored opentelemetry module outside DOCUMENTED (a logger name, a frame check).
CPython's own underscored API (`sys._getframe`) is not OpenTelemetry's and is not scanned (docs/compatibility.md).
"""

from __future__ import annotations

import ast
import contextlib
import enum
import importlib
import inspect
import re
import textwrap
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import opentelemetry
import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

from otel_audit import _sdk_compat

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("otel_audit", "processors", "exporters")
COMPAT = ROOT / "otel_audit" / "_sdk_compat.py"
_COMPAT_MODULE = "otel_audit._sdk_compat"

#: Underscored modules that are the only, documented import path of a public API (the OTel docs import
#: from them): the Logs API, the Logs SDK, and the OTLP log exporters.
DOCUMENTED = frozenset({
    "opentelemetry._logs",
    "opentelemetry.sdk._logs",
    "opentelemetry.sdk._logs.export",
    "opentelemetry.exporter.otlp.proto.grpc._log_exporter",
    "opentelemetry.exporter.otlp.proto.http._log_exporter",
})
_DOTTED = re.compile(r"opentelemetry(?:\.[A-Za-z_][A-Za-z0-9_]*)+")


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _private_module(module: str) -> bool:
    return any(_private(part) for part in module.split("."))


# -- what OpenTelemetry calls private -----------------------------------------------------------------


def _names_defined(tree: ast.AST) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and _private(node.name):
            out.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and _private(node.attr):
            out.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and _private(node.id):
            out.add(node.id)
    return out


@cache
def otel_private_names() -> frozenset[str]:
    """Every underscored name the installed opentelemetry packages define (generated protobuf code aside),
    and the enum internals their enums expose (`SeverityNumber._value_`)."""
    names: set[str] = set()
    for base in opentelemetry.__path__:
        for path in Path(base).rglob("*.py"):
            if "proto" in path.relative_to(base).parts[:1] or path.name.endswith("_pb2.py"):
                continue
            try:
                names |= _names_defined(ast.parse(path.read_text(encoding="utf-8")))
            except (SyntaxError, UnicodeDecodeError):
                continue
    names |= {n for n in vars(SeverityNumber.INFO) if _private(n)}  # _value_, _name_, _sort_order_
    names |= {n for n in vars(enum.Enum) if _private(n)}
    return frozenset(names)


@cache
def _class_private_names(qualname: str) -> frozenset[str]:
    """The underscored names the OpenTelemetry classes in the MRO of `module:Class` define; `module:fn()`
    is a class factory of the compatibility module, called to get the class."""
    module, _, attr = qualname.partition(":")
    try:
        obj = getattr(importlib.import_module(module), attr.removesuffix("()"))
        if attr.endswith("()"):
            obj = obj()
    except (ImportError, AttributeError):
        return frozenset()
    names: set[str] = set()
    for klass in getattr(obj, "__mro__", ()):
        if not klass.__module__.startswith("opentelemetry"):
            continue
        names |= {n for n in vars(klass) if _private(n)}
        with contextlib.suppress(OSError, TypeError, SyntaxError):
            names |= _names_defined(ast.parse(textwrap.dedent(inspect.getsource(klass))))
    return frozenset(names)


# -- the scan -------------------------------------------------------------------------------------------


class _Scan(ast.NodeVisitor):
    """One module. `x._name` on something other than self/cls is ours (not flagged) when the same function
    narrows `x` to a class of this module that defines `_name` (`isinstance(x, K)`, `x = K(...)`,
    `x = cls(...)`): e.g. `other._value` in `SecretBytes.__eq__` after `isinstance(other, SecretBytes)`."""

    def __init__(self, where: str, tree: ast.AST) -> None:
        self.where = where
        self.problems: list[str] = []
        self.imports: dict[str, str] = {}  # local name -> "module:attr" or "module"
        self.otel_bases: list[set[str]] = []  # per enclosing class: private names its OTel bases define
        self.classes = {n.name: _names_defined(n) for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
        self.class_names: list[str] = []
        self.narrowed: list[dict[str, set[str]]] = []  # per enclosing function: dump(expr) -> class names

    def problem(self, node: ast.AST, text: str) -> None:
        self.problems.append(f"{self.where}:{getattr(node, 'lineno', '?')}: {text}")

    # imports
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name.startswith("opentelemetry"):
                if _private_module(alias.name) and alias.name not in DOCUMENTED:
                    self.problem(node, f"imports private module {alias.name}")
                self.imports[alias.asname or alias.name.split(".")[0]] = alias.name

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if module == _COMPAT_MODULE or module == "otel_audit":
            for alias in node.names:  # classes built on OpenTelemetry's come from there too
                full = f"{module}:{alias.name}" if module == _COMPAT_MODULE else f"{module}.{alias.name}"
                self.imports[alias.asname or alias.name] = full
            return
        if not module.startswith("opentelemetry"):
            return
        if _private_module(module) and module not in DOCUMENTED:
            self.problem(node, f"imports from private module {module}")
        public = _public_names(module) if module in DOCUMENTED else None
        for alias in node.names:
            full = f"{module}.{alias.name}"
            if _private(alias.name):
                self.problem(node, f"imports private name {alias.name} from {module}")
            elif public is not None and alias.name not in public and full not in DOCUMENTED:
                self.problem(node, f"imports {alias.name} from {module}, which is not in its __all__")
            self.imports[alias.asname or alias.name] = f"{module}:{alias.name}"

    # classes deriving from OpenTelemetry classes
    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        names: set[str] = set()
        for base in node.bases:
            qualname = self._base(base)
            if qualname is not None:
                names |= _class_private_names(qualname)
        self.otel_bases.append(names)
        self.class_names.append(node.name)
        self.generic_visit(node)
        self.class_names.pop()
        self.otel_bases.pop()

    def _base(self, base: ast.expr) -> str | None:
        """`module:Class` (or `otel_audit._sdk_compat:factory()`) for a base class that may derive from OTel's."""
        if isinstance(base, ast.Name):
            found = self.imports.get(base.id, "")
            return found if ":" in found else None
        if isinstance(base, ast.Call) and not base.args:
            f = base.func
            if isinstance(f, ast.Name) and self.imports.get(f.id, "").startswith(_COMPAT_MODULE + ":"):
                return self.imports[f.id] + "()"
            if (isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name)
                    and self.imports.get(f.value.id) == _COMPAT_MODULE):
                return f"{_COMPAT_MODULE}:{f.attr}()"
        return None

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        if self.otel_bases and node.name in self.otel_bases[-1]:
            self.problem(node, f"overrides the OpenTelemetry base class's private {node.name}")
        self.narrowed.append(self._narrowings(node))
        self.generic_visit(node)
        self.narrowed.pop()

    def _narrowings(self, fn: ast.AST) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for n in ast.walk(fn):
            if (isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "isinstance"
                    and len(n.args) == 2):
                kinds = n.args[1].elts if isinstance(n.args[1], ast.Tuple) else [n.args[1]]
                out.setdefault(ast.dump(n.args[0]), set()).update(k.id for k in kinds if isinstance(k, ast.Name))
            elif isinstance(n, ast.Assign) and isinstance(n.value, ast.Call) and isinstance(n.value.func, ast.Name):
                kind = n.value.func.id
                if kind == "cls" and self.class_names:
                    kind = self.class_names[-1]
                for target in n.targets:
                    out.setdefault(ast.dump(target).replace("Store()", "Load()"), set()).add(kind)
        return out

    def _narrowed_to_ours(self, value: ast.expr, attr: str) -> bool:
        if not self.narrowed:
            return False
        kinds = self.narrowed[-1].get(ast.dump(value), set())
        return any(attr in self.classes.get(k, ()) for k in kinds)

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    # attribute access
    def _owner_is_ours(self, value: ast.expr) -> bool:
        return isinstance(value, ast.Name) and value.id in ("self", "cls")

    def _check_attr(self, node: ast.AST, value: ast.expr, attr: str) -> None:
        if not _private(attr):
            return
        if self._owner_is_ours(value):
            if self.otel_bases and attr in self.otel_bases[-1]:
                self.problem(node, f"uses the OpenTelemetry base class's private {attr}")
            return
        is_super = isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "super"
        if is_super and not (self.otel_bases and attr in self.otel_bases[-1]):
            return
        if attr in otel_private_names() and not self._narrowed_to_ours(value, attr):
            self.problem(node, f"reads or writes {attr}, a private OpenTelemetry name")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self._check_attr(node, node.value, node.attr)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        f = node.func
        if (isinstance(f, ast.Name) and f.id in ("getattr", "hasattr", "setattr", "delattr") and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)):
            self._check_attr(node, node.args[0], node.args[1].value)
        self.generic_visit(node)

    # strings naming private modules
    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str):
            for match in _DOTTED.finditer(node.value):
                dotted = match.group(0)
                if _private_module(dotted) and dotted not in DOCUMENTED:
                    self.problem(node, f"names private module {dotted!r}")


@cache
def _public_names(module: str) -> frozenset[str] | None:
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return None
    names = getattr(mod, "__all__", None)
    if names is None:
        return frozenset(n for n in vars(mod) if not n.startswith("_"))
    return frozenset(names)


def scan_source(source: str, where: str = "<string>") -> list[str]:
    """The private OpenTelemetry accesses in `source` (one line each)."""
    tree = ast.parse(source)
    scan = _Scan(where, tree)
    # Docstrings and comments may name private things; only code counts.
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                node.body[0] = ast.Pass()
    scan.visit(tree)
    return scan.problems


def _sources() -> Iterator[Path]:
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*.py")):
            if path != COMPAT:
                yield path


def test_no_module_outside_the_compat_module_touches_private_opentelemetry_names() -> None:
    """Every private OpenTelemetry access in the package goes through otel_audit._sdk_compat."""
    problems: list[str] = []
    for path in _sources():
        problems += scan_source(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    assert not problems, "private OpenTelemetry access outside otel_audit/_sdk_compat.py:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from opentelemetry._logs._internal import ProxyLogger", "private module"),
        ("import opentelemetry.sdk._configuration", "private module"),
        ("from opentelemetry.sdk._configuration import _OTelSDKConfigurator", "private"),
        ("from opentelemetry.sdk._logs import _SomethingInternal", "private name"),
        ("from opentelemetry.sdk._logs import LogRecordLimits, NotExported", "not in its __all__"),
        ("d = attrs._dict", "_dict"),
        ("n = sev._value_", "_value_"),
        ("real = proxy._logger", "_logger"),
        (
            "class A:\n    def __init__(self, p):\n        self._logger = p.get_logger('x')\n"
            "    def send(self):\n        return self._logger._logger\n",
            "_logger",
        ),
        ("d = getattr(attrs, '_dict', None)", "_dict"),
        ("log = logging.getLogger('opentelemetry._logs._internal')", "names private module"),
        (
            "from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter\n"
            "class E(OTLPLogExporter):\n"
            "    def f(self):\n"
            "        return self._shutdown\n",
            "base class's private _shutdown",
        ),
        (
            "from otel_audit import _sdk_compat\n"
            "class E(_sdk_compat.otlp_http_exporter_base()):\n"
            "    def f(self):\n"
            "        return self._endpoint\n",
            "base class's private _endpoint",
        ),
        (
            "from otel_audit._sdk_compat import SdkConfigurator\n"
            "class C(SdkConfigurator):\n"
            "    def _configure(self, **kwargs):\n"
            "        pass\n",
            "overrides the OpenTelemetry base class's private _configure",
        ),
        (
            "from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter\n"
            "class E(OTLPLogExporter):\n"
            "    def _initialize_channel_and_stub(self):\n"
            "        super()._initialize_channel_and_stub()\n",
            "overrides",
        ),
    ],
)
def test_the_scan_finds_each_kind_of_private_access(source: str, expected: str) -> None:
    """The scan reports each way of reaching into OpenTelemetry internals (so the test above can fail)."""
    problems = scan_source(source)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize(
    "source",
    [
        "from opentelemetry._logs import SeverityNumber, get_logger_provider",
        "from opentelemetry.sdk._logs.export import BatchLogRecordProcessor",
        "from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter",
        "class P:\n    def __init__(self):\n        self._dict = {}\n    def f(self):\n        return self._dict\n",
        "import sys\nframe = sys._getframe()",
        "class S:\n    def __init__(self):\n        self._value = 1\n"
        "    def __eq__(self, other):\n        return isinstance(other, S) and self._value == other._value\n",
        "'''the SDK's opentelemetry.sdk._configuration module'''",
    ],
)
def test_the_scan_passes_public_use(source: str) -> None:
    """Documented underscored modules, our own private attributes and CPython's _getframe are not flagged."""
    assert scan_source(source) == []


# -- the compatibility functions on the installed SDK -----------------------------------------------------


class _Keep(LogRecordProcessor):
    def __init__(self) -> None:
        self.records: list[object] = []

    def on_emit(self, log_record: object) -> None:  # type: ignore[override]
        self.records.append(log_record)

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def test_severity_int_is_the_severity_number() -> None:
    """severity_int gives each SeverityNumber's public .value."""
    assert [_sdk_compat.severity_int(s) for s in SeverityNumber] == [s.value for s in SeverityNumber]


def test_writable_attributes_writes_past_the_record_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Attributes written through writable_attributes are neither evicted nor truncated by the SDK's limits."""
    monkeypatch.setenv("OTEL_ATTRIBUTE_COUNT_LIMIT", "2")
    monkeypatch.setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "4")
    keep = _Keep()
    provider = LoggerProvider()
    provider.add_log_record_processor(keep)
    provider.get_logger("t").emit(event_name="e", attributes={"a": "x"})
    lr = keep.records[0].log_record  # type: ignore[attr-defined]
    d = _sdk_compat.writable_attributes(lr)
    for i in range(5):
        d[f"k{i}"] = "long value"
    assert dict(_sdk_compat.attributes_view(lr.attributes)) == {"a": "x", **{f"k{i}": "long value" for i in range(5)}}
    provider.shutdown()


def test_unlimited_limits_keep_every_attribute_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """A record built with unlimited_limits keeps all attributes and full values, whatever OTEL_*_LIMIT says."""
    from opentelemetry._logs import LogRecord
    from opentelemetry.sdk._logs import ReadWriteLogRecord

    monkeypatch.setenv("OTEL_ATTRIBUTE_COUNT_LIMIT", "2")
    monkeypatch.setenv("OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT", "3")
    attrs = {f"k{i}": "value" * 10 for i in range(200)}
    record = ReadWriteLogRecord(LogRecord(attributes=attrs), limits=_sdk_compat.unlimited_limits())
    assert dict(record.log_record.attributes) == attrs  # type: ignore[arg-type]
    assert record.dropped_attributes == 0


def test_sdk_logger_sees_through_the_api_proxy() -> None:
    """sdk_logger finds the SDK Logger behind the API's proxy once a provider is set, and its scope."""
    from opentelemetry._logs import get_logger_provider
    from opentelemetry.sdk._logs import Logger

    provider = LoggerProvider()
    direct = provider.get_logger("t", "1.0")
    assert _sdk_compat.sdk_logger(direct) is direct
    assert _sdk_compat.logger_scope(direct).name == "t"
    assert _sdk_compat.sdk_logger(object()) is None
    proxied = get_logger_provider().get_logger("p")  # the test session may or may not have set a provider
    found = _sdk_compat.sdk_logger(proxied)
    assert found is None or isinstance(found, Logger)
    provider.shutdown()


def test_the_otlp_exporter_bases_build_on_the_installed_exporters() -> None:
    """The OTLP base classes subclass the installed exporters and expose their hooks."""
    http = _sdk_compat.otlp_http_exporter_base()(endpoint="http://127.0.0.1:9/v1/logs")
    grpc = _sdk_compat.otlp_grpc_exporter_base()(endpoint="http://127.0.0.1:9", insecure=True)
    try:
        assert callable(http.on_answer) and callable(http.renew_session) and callable(http.skip_tls_verify)
        assert not grpc.is_shut_down()
        grpc.renew_channel()
    finally:
        http.shutdown()
        grpc.shutdown()
    assert grpc.is_shut_down()


def test_the_configurator_base_is_the_sdks() -> None:
    """SdkConfigurator derives from the SDK configurator that opentelemetry-instrument runs."""
    base = _sdk_compat.SdkConfigurator
    assert any(k.__module__.startswith("opentelemetry.sdk") for k in base.__mro__[1:])
    assert _sdk_compat.built_by_sdk_log_setup(inspect.currentframe()) is False


def test_the_pins_are_the_range_the_compat_module_names() -> None:
    """pyproject.toml pins the OpenTelemetry packages to _sdk_compat.SUPPORTED, and the installed SDK is in it."""
    import tomllib
    from packaging.specifiers import SpecifierSet

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    pins = {d.split(">=")[0].split("<")[0].strip(): d for d in deps if d.startswith("opentelemetry-")}
    assert set(pins) == {"opentelemetry-api", "opentelemetry-sdk", "opentelemetry-exporter-otlp"}
    for name, dep in pins.items():
        assert dep == name + _sdk_compat.SUPPORTED, dep
    assert _sdk_compat.sdk_version() in SpecifierSet(_sdk_compat.SUPPORTED)
    assert InMemoryLogRecordExporter and SimpleLogRecordProcessor  # the 1.40+ names the tests use
