"""The `otel-audit` command line: verify, keys, catalog, hash, demo, check-config, serve, token, query, prove."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence

from otel_audit.errors import AuditError
from otel_audit.safe import RedactingFilter, redact_text

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (`otel-audit --help` does not need it)
if TYPE_CHECKING:
    from typing import Any, NoReturn

EXIT_OK, EXIT_INTEGRITY, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse exits 2 as well; keep its message short
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _duration(value: str) -> float:
    from otel_audit.exporters.file import parse_duration
    from otel_audit.keys import MAX_GRACE_S

    try:
        seconds = parse_duration(value, where="--grace")
    except AuditError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds > MAX_GRACE_S:
        raise argparse.ArgumentTypeError(f"--grace {value!r} is too long: the old keys would stay valid that long "
                                         "after the rotation; give at most 100 years (876000h)")
    return seconds


def _time(value: str) -> int:
    from otel_audit.verify.liveness import parse_time

    try:
        return parse_time(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The command line parser. Every command is listed (`otel-audit --help` is the same either way), but
    with `argv` only the command it runs gets its arguments: building all of them is a good part of the
    start of a command that needs one (most of it gettext looking up translations of argparse's own texts)."""
    p = _Parser(prog="otel-audit", description="Tamper-evident audit logging on OpenTelemetry.")
    p.add_argument("--version", action=_VersionAction, nargs=0,
                   help="show the version and which integrity core is active (native or pure Python), then exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    # the top-level parser has no option that takes a value: the command is its first word not an option
    wanted = None if argv is None else next((a for a in argv if not a.startswith("-")), "")
    for name, helptext, arguments in _COMMANDS:
        c = sub.add_parser(name, help=helptext)
        if wanted is None or wanted == name:
            arguments(c)
    return p


def _verify_arguments(v: argparse.ArgumentParser) -> None:
    from otel_audit import readers  # for the kinds of --source; `otel-audit --help` does not need it (gzip ...)

    v.add_argument("paths", nargs="*", metavar="PATH",
                   help="OTLP JSON lines files (.gz too), SIEM exports, or folders of them (files that are plainly "
                        "not archives, such as keyrings and spool files, are skipped and listed)")
    v.add_argument("--keys", required=True, help="public keyring: a keyring.json, a .vkey file, or a folder of them")
    v.add_argument("--store", metavar="URL",
                   help="re-prove an audit service's store (sqlite:////path/audit.db) instead of files: every row's "
                        "signed record, and every filter column against it; an edited row is named by its event id")
    v.add_argument("--witness-keys", metavar="KEYRING",
                   help="with --store: the service's public keyring (its witness_keys), to check the witness "
                        "cosignature of every stored checkpoint and to verify the service's own stream; with an "
                        "export bundle: every event's proof must carry a cosignature by one of its keys")
    v.add_argument("--format", choices=("text", "json"), default="text")
    v.add_argument("--allow-open", action="store_true",
                   help="accept streams without an end checkpoint (a live producer); still checks all else")
    v.add_argument("--partial", action="store_true",
                   help="accept streams whose predecessor (restart) or parent (fork) is not in the input, "
                        "for an archive that starts mid-lineage; by default that fails, since the earlier "
                        "stream may have been deleted whole")
    v.add_argument("--state", metavar="FILE",
                   help="remember the latest verified checkpoint of every lineage in FILE (created on first use) "
                        "and fail if the input is shorter than, or differs from, what earlier runs verified: a "
                        "deleted newest stream, a removed tail, a re-signed history; updated only when the run "
                        "verifies (docs/state.md)")
    when = v.add_mutually_exclusive_group()
    when.add_argument("--at", metavar="TIME", type=_time,
                      help="judge liveness at TIME (RFC 3339, e.g. 2024-05-01T12:00:00Z, or unix seconds): an open "
                           "stream whose last checkpoint is older than its declared heartbeat allows (2 x interval "
                           "+ 5 s) stopped silently or was cut back, and fails")
    when.add_argument("--now", action="store_true",
                      help="--at the current time; for an archive that lags its producer (a collector queue, a "
                           "SIEM's ingest delay), give --at a time that far back instead")
    v.add_argument("--ignore-unsigned", action="store_true", help="do not fail on records without integrity attributes")
    v.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    v.add_argument("--source", choices=("auto", "otlp", *readers.kinds()), default="auto",
                   help="what every line of the files must be: OTLP JSON, or Splunk / Elasticsearch / Datadog "
                        "exports (default: each line is read by the reader whose shape it has)")


def _keys_arguments(k: argparse.ArgumentParser) -> None:
    ks = k.add_subparsers(dest="keys_command", metavar="ACTION", parser_class=_Parser)
    g = ks.add_parser("generate", help="create the first key (and the keys folder); refuses a folder that already "
                                       "has a current key: replace that one with 'keys rotate'")
    g.add_argument("--dir", required=True, help="keys folder (keyring.json + private/)")
    g.add_argument("--name", help="key name (default otel-audit-<UTC time>)")
    g.add_argument("--add", action="store_true",
                   help="add another current key to a folder that has one (both stay valid; 'keys rotate' instead "
                        "ends the old one after a grace period)")
    r = ks.add_parser("rotate", help="add a new key; the current ones stay valid for --grace")
    r.add_argument("--dir", required=True)
    r.add_argument("--name")
    r.add_argument("--grace", type=_duration, default=3600.0, help="how long old keys may still sign (default 1h)")
    e = ks.add_parser("export", help="write the public keyring alone, for auditors")
    e.add_argument("--dir", required=True)
    e.add_argument("--out", required=True, help="a file, or a folder to hold keyring.json")
    li = ks.add_parser("list", help="list the keys of a keyring")
    li.add_argument("--dir", required=True, help="keys folder or keyring file")


def _catalog_arguments(c: argparse.ArgumentParser) -> None:
    c.add_argument("--format", choices=("markdown", "json"), default="markdown")


def _hash_arguments(h: argparse.ArgumentParser) -> None:
    h.add_argument("value")
    hk = h.add_mutually_exclusive_group()
    hk.add_argument("--key", help="the HMAC key spec (base64:..., hex:..., file:PATH; prefer file:, as other users "
                                  "can see arguments); default $OTEL_AUDIT_HMAC_KEY")
    hk.add_argument("--config", help="take processors.redaction.hmac_key from this config file")


def _demo_arguments(d: argparse.ArgumentParser) -> None:
    d.add_argument("--out", default="audit-demo", help="output folder (default ./audit-demo)")
    d.add_argument("--users", type=int, default=6, help="simulated users (default 6)")
    d.add_argument("--seed", type=int, default=7)
    d.add_argument("--no-service", action="store_true",
                   help="only the archive: do not also start the audit service, send it the events and query it")


def _check_config_arguments(cc: argparse.ArgumentParser) -> None:
    cc.add_argument("config")
    cc.add_argument("--strict", action="store_true", help="exit 1 if there is any warning")


def _spool_arguments(sp: argparse.ArgumentParser) -> None:
    sps = sp.add_subparsers(dest="spool_command", required=True, parser_class=_Parser)
    st = sps.add_parser("status", help="what the spool holds, per exporter (also ones no longer configured)")
    st.add_argument("directory")
    st.add_argument("--format", choices=("text", "json"), default="text")
    dr = sps.add_parser("drop", help="give up one exporter's undelivered backlog; the producer must be "
                                     "stopped, and its next start seals the drop into the signed stream")
    dr.add_argument("directory")
    dr.add_argument("--exporter", required=True)
    dr.add_argument("--reason", required=True, help="why; recorded in the signed audit trail")


#: the commands, in the order --help lists them: (name, help, what adds its arguments)
_COMMANDS: tuple[tuple[str, str, Callable[[argparse.ArgumentParser], None]], ...] = (
    ("verify", "verify archives with the public keyring (exit 0 ok, 1 integrity problem, 2 unusable)",
     _verify_arguments),
    ("keys", "manage Ed25519 signing keys and the public keyring", _keys_arguments),
    ("catalog", "print the audit event catalog", _catalog_arguments),
    ("hash", "the hmac-sha256 value a redacted VALUE appears as, to search for it", _hash_arguments),
    ("demo", "simulate an LLM gateway into a signed archive, then verify it", _demo_arguments),
    ("check-config", "check a config file (a dry run: nothing is written or sent); warns on stderr about setups "
                     "that can lose records", _check_config_arguments),
    ("spool", "inspect a delivery spool, or drop a backlog (audited)", _spool_arguments),
    ("serve", "run the audit service: OTLP logs in, verified on ingest, stored, queried (docs/service.md)",
     lambda c: _serve_arguments(c)),
    ("token", "create an API token for the audit service (prints it once, and the line for service.yaml)",
     lambda c: _token_arguments(c)),
    ("query", "query the audit service's events (GET /v1/events): a table on a terminal, JSON lines otherwise",
     lambda c: _query_arguments(c)),
    ("prove", "fetch an event's inclusion proof from the service (or read a .tlog-proof file) and check it offline "
              "with the public keys (exit 0 proven, 1 not)", lambda c: _prove_arguments(c)),
    ("store-migrate", "create or upgrade a PostgreSQL store's schema as the tables' owner, and grant the service's "
                      "role INSERT and SELECT (docs/service.md §3)", lambda c: _store_migrate_arguments(c)),
)


def _query_arguments(p: argparse.ArgumentParser) -> None:
    from otel_audit.service import client

    client.arguments(p)


def cmd_query(args: argparse.Namespace) -> int:
    from otel_audit.service import client

    return client.run(args)


def _store_migrate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", required=True, metavar="URL",
                   help="the owner's URL, postgresql://owner@host:port/db (the password in $PGPASSWORD or ~/.pgpass)")
    p.add_argument("--grant", action="append", default=[], metavar="ROLE",
                   help="a role the service connects as: granted INSERT and SELECT (UPDATE of the streams' state); "
                        "repeat for several")


def cmd_store_migrate(args: argparse.Namespace) -> int:
    from otel_audit.errors import ConfigError

    if not args.store.startswith(("postgresql://", "postgres://")):
        raise ConfigError("--store: a PostgreSQL URL, postgresql://owner@host:port/db (a SQLite store migrates "
                          "itself when the service starts)")
    from otel_audit.service.store.postgres import mask, migrate

    version = migrate(args.store, grant=args.grant)
    granted = f"; granted to {', '.join(args.grant)}" if args.grant else ""
    print(f"store {mask(args.store)}: schema version {version}{granted}")
    return EXIT_OK


def _prove_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("event_id", nargs="?", metavar="EVENT_ID", help="the event's id (as the query API shows it)")
    p.add_argument("--url", help="the service's base URL, e.g. http://127.0.0.1:4318 (the token, if it needs one, "
                                 "in $OTEL_AUDIT_TOKEN)")
    p.add_argument("--file", metavar="PROOF", help="check a saved .tlog-proof file instead of fetching one")
    p.add_argument("--keys", required=True, help="the producers' public keyring")
    p.add_argument("--witness-keys", metavar="KEYRING",
                   help="the witness's public keyring: at least one of its cosignatures must verify")
    p.add_argument("--out", metavar="FILE", help="save the fetched proof (a .tlog-proof anyone can check offline)")


def cmd_prove(args: argparse.Namespace) -> int:
    from otel_audit.errors import InputError
    from otel_audit.keys import Keyring
    from otel_audit.service import proof as tlog
    from otel_audit.service.query import rfc3339

    if bool(args.file) == bool(args.event_id):
        print("otel-audit prove: give EVENT_ID (with --url) or --file PROOF", file=sys.stderr)
        return EXIT_USAGE
    if args.file:
        try:
            with open(args.file, encoding="utf-8") as fh:
                text = fh.read(tlog.MAX_PROOF_BYTES + 1)
        except UnicodeDecodeError:
            raise InputError(f"{args.file}: not a text file") from None
        what = args.file
    else:
        if not args.url:
            print("otel-audit prove: --url is required with EVENT_ID", file=sys.stderr)
            return EXIT_USAGE
        import urllib.parse

        import requests

        headers = {}
        token = os.environ.get("OTEL_AUDIT_TOKEN")
        if token:
            headers["Authorization"] = f"Bearer {token}"
        url = f"{args.url.rstrip('/')}/v1/events/{urllib.parse.quote(args.event_id, safe='')}/proof"
        try:
            r = requests.get(url, headers=headers, timeout=30)
        except requests.RequestException as exc:
            raise InputError(f"{args.url}: cannot reach the service ({type(exc).__name__})") from None
        if r.status_code != 200:
            try:
                msg = r.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                msg = r.text[:200]
            print(f"otel-audit prove: the service answered {r.status_code}: {msg}", file=sys.stderr)
            return EXIT_USAGE
        text = r.text
        what = args.event_id
        if args.out:
            with open(args.out, "w", encoding="utf-8") as fh:
                fh.write(text)
    ring = Keyring.load(args.keys)
    witnesses = Keyring.load(args.witness_keys) if args.witness_keys else None
    try:
        got = tlog.check(text, ring, witnesses)
    except tlog.ProofError as exc:
        print(f"NOT PROVEN: {what}: {exc}")
        return EXIT_INTEGRITY
    event, t = got.content[0], int(got.content[1])
    who = ("the audit service signed at ingest (its producer did not sign it: the hop before the service is "
           f"trusted; key {got.key})" if got.signed == "at ingest" else "its producer signed")
    print(f"PROVEN: {what}: event {event!r} at {rfc3339(t)} is record {got.seq} of stream {got.stream}, in the "
          f"tree of {got.size} records {who} at {rfc3339(got.checkpoint_time_ns)}")
    if witnesses is not None:
        print(f"  witnessed by: {', '.join(got.witnessed_by)}")
    if args.out:
        print(f"  proof saved to {args.out}")
    return EXIT_OK


def _serve_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("--config", required=True, metavar="FILE", help="the service's service.yaml (docs/service.md)")


def _token_arguments(t: argparse.ArgumentParser) -> None:
    t.add_argument("--name", required=True, help="who the token is for (shown in audit events of its use)")
    t.add_argument("--scope", action="append", required=True, dest="scopes",
                   choices=("ingest", "audit:read", "audit:export", "audit:admin"),
                   help="what the token may do; repeat for several")


def cmd_serve(args: argparse.Namespace) -> int:
    from otel_audit.service import app, config

    logging.getLogger("otel_audit.service").setLevel(logging.INFO)
    return app.serve(config.load(args.config))


def cmd_token(args: argparse.Namespace) -> int:
    import hashlib
    import secrets

    import orjson

    token = "oa_" + secrets.token_urlsafe(32)
    digest = hashlib.sha256(token.encode()).hexdigest()
    print(f"token (shown once; give it to {args.name}, keep it secret):")
    print(f"  {token}")
    print("add to service.yaml under tokens: (only its SHA-256 is stored):")
    print(f"  - {{name: {orjson.dumps(args.name).decode()}, sha256: {digest}, scopes: [{', '.join(args.scopes)}]}}")
    return EXIT_OK


def cmd_spool(args: argparse.Namespace) -> int:
    from otel_audit.processors import spool

    if args.spool_command == "drop":
        entry = spool.drop(args.directory, args.exporter, reason=args.reason)
        print(f"dropped the backlog of {entry['exporter']}: {entry['records']} record(s), {entry['bytes']} bytes; "
              "the producer's next start records this in its signed stream")
        return EXIT_OK
    doc = spool.status(args.directory)
    if args.format == "json":
        import orjson  # imported here: `otel-audit --help` and the other commands do not pay for it

        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
        return EXIT_OK
    for s in doc["slots"]:
        print(f"{s['directory']}: {s['segments']} segment(s), {s['bytes']} bytes, "
              f"{'in use by a running producer' if s['in_use'] else 'not in use'}"
              + (f", {s['quarantined']} file(s) quarantined" if s["quarantined"] else ""))
        for c in s["cursors"]:
            if "damaged" in c:
                print(f"  {c['exporter']}: cursor damaged ({c['damaged']}); the next start replays everything to it")
            else:
                behind = (f"{c['records_behind']} record(s), {c['bytes_behind']} bytes not delivered"
                          if c["records_behind"] else "everything delivered")
                print(f"  {c['exporter']}: " + behind)
        for d in s["drops_not_yet_signed"]:
            print(f"  dropped by {d['actor']}: {d['exporter']} ({d['records']} record(s)); not yet signed")
    return EXIT_OK


def _version() -> str:
    from otel_audit import __version__

    return __version__


class _VersionAction(argparse.Action):
    """--version: the package's version and the integrity core in use (looked up only when asked)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        from otel_audit import _native

        print(f"{parser.prog} {_version()}\n{_native.describe()}")
        parser.exit()


def cmd_verify(args: argparse.Namespace) -> int:
    from otel_audit.keys import Keyring
    from otel_audit.verify import render_text, verify_paths

    ring = Keyring.load(args.keys)
    if args.store and (args.paths or args.source != "auto"):
        print("otel-audit verify: --store takes no PATH or --source", file=sys.stderr)
        return EXIT_USAGE
    from otel_audit.verify.bundle import is_bundle

    bundles = [p for p in args.paths if is_bundle(p)]
    if bundles:
        if len(args.paths) > 1 or args.store:
            print(f"otel-audit verify: {bundles[0]} is an export bundle: verify it on its own (one PATH)",
                  file=sys.stderr)
            return EXIT_USAGE
        return _verify_bundle(args, ring)
    if args.witness_keys and not args.store:
        print("otel-audit verify: --witness-keys goes with --store or an export bundle (otel-audit prove takes it "
              "for one proof)", file=sys.stderr)
        return EXIT_USAGE
    if not args.store and not args.paths:
        print("otel-audit verify: give the archives to verify (PATH ...) or --store URL", file=sys.stderr)
        return EXIT_USAGE
    if args.store:
        from otel_audit.service.verify_store import verify_store

        rep = verify_store(args.store, ring, allow_open=args.allow_open, ignore_unsigned=args.ignore_unsigned,
                           partial=args.partial, at=time.time_ns() if args.now else args.at,
                           witnesses=Keyring.load(args.witness_keys) if args.witness_keys else None,
                           state=args.state)
    else:
        rep = verify_paths(
            args.paths, ring, allow_open=args.allow_open, ignore_unsigned=args.ignore_unsigned, partial=args.partial,
            progress=not args.no_progress, source=args.source, state=args.state,
            at=time.time_ns() if args.now else args.at,
        )
    code = EXIT_OK if rep.ok else EXIT_INTEGRITY
    try:
        if args.format == "json":
            import orjson

            sys.stdout.write(orjson.dumps(rep.to_json(), option=orjson.OPT_INDENT_2).decode() + "\n")
        else:
            sys.stdout.write(render_text(rep))
        sys.stdout.flush()
    except BrokenPipeError:  # the reader stopped early; the result stands
        _quiet_stdout()
    return code


def _verify_bundle(args: argparse.Namespace, ring: Any) -> int:
    """An export bundle of the audit service: every event's proof, and that it proves the event's record."""
    from otel_audit.keys import Keyring
    from otel_audit.verify.bundle import render, verify_bundle

    witnesses = Keyring.load(args.witness_keys) if args.witness_keys else None
    try:
        rep = verify_bundle(args.paths[0], ring, witnesses)
    except OSError as exc:
        print(f"otel-audit verify: {args.paths[0]}: cannot read: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.format == "json":
            import orjson

            sys.stdout.write(orjson.dumps(rep.to_json(), option=orjson.OPT_INDENT_2).decode() + "\n")
        else:
            sys.stdout.write(render(rep, witnesses is not None))
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_stdout()
    return EXIT_OK if rep.ok else EXIT_INTEGRITY


def cmd_keys(args: argparse.Namespace) -> int:
    from otel_audit import keys

    if args.keys_command == "generate":
        k = keys.generate(args.dir, args.name, refuse_current=not args.add)
        print(f"generated key {k.name} (id {k.key_id.hex()}) in {args.dir}")
        print(f"public keyring: {os.path.join(args.dir, keys.KEYRING_FILE)}  (give this to auditors)")
        print(f"private key:    {os.path.join(args.dir, keys.PRIVATE_DIR, k.name + '.pem')}  (keep it on the producer)")
    elif args.keys_command == "rotate":
        k = keys.rotate(args.dir, args.name, grace_s=args.grace)
        print(f"new key {k.name} (id {k.key_id.hex()}); earlier keys stay valid for {args.grace:g}s more")
        print("running producers switch at their next checkpoint; re-export the keyring to auditors")
    elif args.keys_command == "export":
        out = keys.export(args.dir, args.out)
        print(f"public keyring written to {out}")
    elif args.keys_command == "list":
        ring = keys.Keyring.load(args.dir)
        for k in ring:
            j = k.to_json()
            print(f"{k.name}  id={j['key_id']}  valid {j['not_before'] or '-'} .. {j['not_after'] or 'open'}")
            print(f"    vkey {j['vkey']}")
    else:
        print("otel-audit keys: say generate, rotate, export or list (see --help)", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def cmd_catalog(args: argparse.Namespace) -> int:
    from otel_audit import catalog

    out = catalog.render_json() if args.format == "json" else catalog.render_markdown()
    sys.stdout.write(out if out.endswith("\n") else out + "\n")
    return EXIT_OK


def cmd_hash(args: argparse.Namespace) -> int:
    from otel_audit.errors import ConfigError
    from otel_audit.pseudonym import hmac_value, load_hmac_key

    if args.config:
        from otel_audit import config

        key = config.redaction_hmac_key(args.config)
    else:
        spec = args.key or os.environ.get("OTEL_AUDIT_HMAC_KEY")
        if not spec:
            raise ConfigError("no HMAC key: pass --key SPEC or --config FILE, or set OTEL_AUDIT_HMAC_KEY")
        key = load_hmac_key(spec, where="--key" if args.key else "OTEL_AUDIT_HMAC_KEY")
    print(hmac_value(key, args.value))
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from otel_audit.demo import run_demo

    return run_demo(args.out, users=args.users, seed=args.seed, service=not args.no_service)


def cmd_check_config(args: argparse.Namespace) -> int:
    from otel_audit import config

    # A dry run: every block is checked and the signing key loaded, but no exporter is started,
    # no state is taken and nothing is written to the archive or sent anywhere.
    built = config.build_from_file(args.config, dry_run=True)
    exporters = []
    for eid, exp in built.exporters.items():
        path = getattr(exp, "path", None)
        exporters.append(f"{eid} ({path})" if isinstance(path, str) else eid)
    print(f"{args.config}: OK")
    print(f"  processors: {' -> '.join(built.processors)} (signing key {built.key_name})")
    print(f"  exporters:  {', '.join(exporters)}")
    print("  checked without side effects: nothing was written, locked or sent")
    sys.stdout.flush()
    # Usable, but unable to keep the "nothing lost" promise: stderr, so stdout stays the same.
    for w in built.warnings:
        print(f"warning: {redact_text(w)}", file=sys.stderr)
    if built.warnings and args.strict:
        print(f"otel-audit check-config: {len(built.warnings)} warning(s) and --strict: exit 1", file=sys.stderr)
        return 1  # --strict: a warning fails the check, as a problem does (2 stays unusable input)
    return EXIT_OK


def _quiet_stdout() -> None:
    """After a closed pipe (`otel-audit catalog | head`), send what is left to /dev/null, quietly."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="otel-audit: %(levelname)s: %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # no credential of an endpoint in any log line
        handler.addFilter(RedactingFilter())
    parser = _parser(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    handlers = {
        "verify": cmd_verify, "keys": cmd_keys, "catalog": cmd_catalog, "hash": cmd_hash,
        "demo": cmd_demo, "check-config": cmd_check_config, "spool": cmd_spool,
        "serve": cmd_serve, "token": cmd_token, "prove": cmd_prove, "query": cmd_query,
        "store-migrate": cmd_store_migrate,
    }
    prog = f"otel-audit {args.command}"
    try:
        code = handlers[args.command](args)
        sys.stdout.flush()
        return code
    except AuditError as exc:
        print(f"{prog}: error: {redact_text(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_OK
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"{prog}: error: {where}{exc.strerror or exc}; check the path and its permissions", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # a bug of ours: still one line, and no exit code that passes for a result
        if os.environ.get("OTEL_AUDIT_DEBUG"):
            raise
        print(f"{prog}: internal error: {type(exc).__name__}: {redact_text(exc)} "
              "(please report it; OTEL_AUDIT_DEBUG=1 shows the traceback)", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
