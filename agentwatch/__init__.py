"""agentwatch: observability and drift detection for AI sales agents.

One import namespace. The layers, lowest first (a module imports only from its own layer or lower ones;
``tests/test_layers.py`` enforces it, docs/architecture.md draws it):

    agentwatch.core        ground: errors, the home and its files, durations, severity, SQL quoting, locks
    agentwatch.schemas     the published formats                                     (schemas/)
    agentwatch.client      the Python client agents use (standard library and httpx only)
    agentwatch.store       the Parquet store: datasets, reader, writer, key index
    agentwatch.collector   ingest of files and vendor payloads, the write-ahead log  (collector/)
    agentwatch.checks      detectors, the engine, the incident store                 (checks/)
    agentwatch.alerts      notifications, silences, guard decisions                  (alerts/)
    agentwatch.app         the roof: CLI, API server, scheduler, alert loop, demo, config loader
    agentwatch.dashboards  the Streamlit dashboard                                   (dashboards/)
"""

__version__ = "0.1.0"
