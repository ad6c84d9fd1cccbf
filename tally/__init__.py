"""Tally: self-hosted analytics for LLM telemetry sent in the Reconify format."""
