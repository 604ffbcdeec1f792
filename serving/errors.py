"""Errors that become 4xx answers with a JSON `{"error": ...}` body."""


class RequestError(Exception):
    """A client mistake: answered with `status` and `message`, the server stays up."""

    def __init__(self, message, status=400, retry_after_s=None):
        super().__init__(message)
        self.message = message
        self.status = status
        # Overload refusals say when to come back (REST: the Retry-After header).
        self.retry_after_s = retry_after_s
