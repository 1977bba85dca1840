"""The HTTP API (``extworker api``), shaped like the hosted API."""
