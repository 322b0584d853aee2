"""The audit service: receiver, ingest, witness, store back ends, query API, retention, alerts, reports, console."""
