"""`setaccounts-audit`: replay the command log, check the store against it, and re-drive a command.

Read-only by default: `log` and `verify` only read Kafka (without a consumer group) and MongoDB; only
`redrive` publishes, and it publishes a new command rather than touching an existing job.
"""
