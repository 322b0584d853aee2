"""The audit service: receive over OTLP, verify on ingest, store, query (docs/service.md)."""
