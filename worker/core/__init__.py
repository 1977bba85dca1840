"""The bottom layer: settings, errors, Redis key names, the job contract, records, and
the pieces every layer above may use (egress policy, guarded fetch, image probing)."""
