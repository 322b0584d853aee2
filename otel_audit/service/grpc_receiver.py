"""The OTLP/gRPC logs receiver (opentelemetry.proto.collector.logs.v1.LogsService/Export), next to OTLP/HTTP.

The same contract as ``POST /v1/logs``: the answer comes once every record is stored; records refused one by
one are counted in ``partial_success``; a malformed request is INVALID_ARGUMENT (not retried); a full queue or
a store that failed is UNAVAILABLE (retried by every OTLP exporter); no or a wrong token UNAUTHENTICATED, a
token without the ``ingest`` scope PERMISSION_DENIED.
"""

from __future__ import annotations

import logging
import threading
from concurrent import futures
from typing import Any

import grpc

from otel_audit.service.config import ServiceConfig
from otel_audit.service.ingest import Ingest, IngestError
from otel_audit.service.store import StoreUnavailable

_log = logging.getLogger("otel_audit.service")
METHOD = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"


class GrpcReceiver:
    def __init__(self, cfg: ServiceConfig, ingest: Ingest, host: str, port: int) -> None:
        self.cfg = cfg
        self.ingest = ingest
        self._slots = threading.BoundedSemaphore(cfg.max_inflight)
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=cfg.max_inflight + 2, thread_name_prefix="otlp-grpc"),
            options=[("grpc.max_receive_message_length", cfg.max_request_bytes),
                     ("grpc.max_send_message_length", 4 * 1024 * 1024)],
            maximum_concurrent_rpcs=4 * cfg.max_inflight,
        )
        handler = grpc.method_handlers_generic_handler(
            "opentelemetry.proto.collector.logs.v1.LogsService",
            {"Export": grpc.unary_unary_rpc_method_handler(self.export, request_deserializer=None,
                                                           response_serializer=None)},
        )
        self.server.add_generic_rpc_handlers((handler,))
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.port = self.server.add_insecure_port(target)
        if self.port == 0:
            from otel_audit.errors import ConfigError

            raise ConfigError(f"grpc.endpoint: cannot listen on {host}:{port}")

    def start(self) -> None:
        self.server.start()

    def stop(self, grace: float = 10.0) -> None:
        self.server.stop(grace).wait(grace + 1)

    def _check(self, context: grpc.ServicerContext) -> None:
        if not self.cfg.tokens:
            return
        md = {k.lower(): v for k, v in (context.invocation_metadata() or ())}
        auth = md.get("authorization", "")
        kind, _, token = str(auth).partition(" ")
        if kind.lower() != "bearer" or not token:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "authentication required: send authorization: Bearer "
                                                           "<token> metadata")
        t = self.cfg.token(token.strip())
        if t is None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "the bearer token is not one of this service's tokens")
        assert t is not None
        if "ingest" not in t.scopes and "audit:admin" not in t.scopes:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"token {t.name!r} lacks the scope 'ingest'")

    def export(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as pb

        from otel_audit.service.otlp_proto import ProtoError, request_from_protobuf

        self._check(context)
        if not self._slots.acquire(blocking=True, timeout=5):
            context.abort(grpc.StatusCode.UNAVAILABLE, "the service is busy: retry later")
        try:
            try:
                doc = request_from_protobuf(request)
            except ProtoError as exc:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"not an OTLP ExportLogsServiceRequest: {exc}")
            try:
                result = self.ingest.ingest(doc)
            except IngestError as exc:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            except StoreUnavailable as exc:  # the database is away: one line, retryable
                _log.error("ingest (gRPC): %s; answered UNAVAILABLE (retryable), nothing stored", exc)
                context.abort(grpc.StatusCode.UNAVAILABLE, "the service could not store the request: retry later")
            except Exception:  # noqa: BLE001 - the store failed: retryable, nothing half-acknowledged
                _log.exception("ingest failed; the request is answered UNAVAILABLE (retryable), nothing stored")
                context.abort(grpc.StatusCode.UNAVAILABLE, "the service could not store the request: retry later")
            resp: Any = pb.ExportLogsServiceResponse()
            if result.rejected:
                resp.partial_success.rejected_log_records = result.rejected
                resp.partial_success.error_message = "; ".join(result.errors)
            return bytes(resp.SerializeToString())
        finally:
            self._slots.release()
