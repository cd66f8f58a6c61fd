"""The one line between failures worth retrying and failures that cannot succeed."""


class PermanentFailure(Exception):
    """Retrying cannot help (the input itself is wrong): a consume loop dead-letters the record at once.

    Every other exception is taken as transient and retried.
    """
