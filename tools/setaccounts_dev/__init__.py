"""Development-only engine launchers (embedded Kafka and MongoDB) for `make run`, tests and benchmarks.

Runtime code never imports this package: the services only read addresses from their settings.
"""
