"""``python -m otel_audit.exporters settings``: the exporter settings reference (docs/settings.md)."""

from otel_audit.exporters._settings import main

raise SystemExit(main())
