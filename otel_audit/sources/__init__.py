"""Readers of SIEM exports: they yield the audit records embedded in a backend's search results."""
