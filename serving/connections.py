"""The socket side of deadlines: a connection must send each request's headers in time.

uvicorn closes a kept-alive connection that stays idle after a response, and the app
gives a request's body `ServerConfig.body_timeout_s`; neither covers a connection that
opens and sends nothing, or trickles its headers a byte at a time (the "slowloris"
attack): uvicorn has no header deadline, and the app only sees a request once its
headers are complete. `headers_deadline` adds one to uvicorn's own HTTP protocol.
"""

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def headers_deadline(seconds):
    """uvicorn's httptools protocol, closing a connection whose request headers are not
    complete `seconds` after it opened (or after its next request began).

    Args:
      seconds: the deadline.

    Returns:
      A protocol class for `uvicorn.Config(http=...)`.
    """

    class HeadersDeadlineProtocol(HttpToolsProtocol):
        _headers_timer = None

        def connection_made(self, transport):
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self):
            super().on_message_begin()
            if self._headers_timer is None:  # the next request on a kept-alive connection
                self._arm()

        def on_headers_complete(self):
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc):
            self._disarm()
            super().connection_lost(exc)

        def _arm(self):
            self._disarm()
            self._headers_timer = self.loop.call_later(seconds, self._expire)

        def _disarm(self):
            if self._headers_timer is not None:
                self._headers_timer.cancel()
                self._headers_timer = None

        def _expire(self):
            self._headers_timer = None
            if not self.transport.is_closing():
                self.transport.close()

    return HeadersDeadlineProtocol
