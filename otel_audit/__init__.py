"""otel-audit."""
