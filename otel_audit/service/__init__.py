"""The audit service: OTLP receiver, verification on ingest, store, API (docs in /work/shared/DESIGN.md)."""
