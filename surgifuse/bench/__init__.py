"""``surgifuse bench``: what latency SurgiFuse adds, stage by stage (docs/benchmarks-cli.md).

``runner`` times the streaming pipeline per stage, ``compare`` the ratio comparisons, ``e2e`` a
websocket client against a running server, ``stats`` the percentiles, ``machine`` the machine,
``report`` the table, JSON (with its schema check) and PNG, ``suite`` one whole invocation.
"""
