"""Request bodies without a ``Content-Length`` (chunked) meet the same limit as the others.

With a length, werkzeug answers 413 before reading anything. Without one, it would read up to
the limit and silently drop the rest, so a chunked body one byte too long reached the views
cut short. Here such a body is read up to one byte past the limit: too long, it is a 413;
otherwise it is handed on with its length known, so every later limit (the token endpoint's
smaller one) is checked the usual way.
"""

from __future__ import annotations

import io

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge


def bound_streamed_body() -> None:
    """A ``before_request`` hook."""
    limit = request.max_content_length
    environ = request.environ
    if limit is None or environ.get("CONTENT_LENGTH") or "wsgi.input_terminated" not in environ:
        return
    stream, chunks, size = environ["wsgi.input"], [], 0
    while size <= limit:  # a read may return less than asked before the end
        chunk = stream.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise RequestEntityTooLarge()
    data = b"".join(chunks)
    environ["wsgi.input"] = io.BytesIO(data)
    environ["CONTENT_LENGTH"] = str(len(data))
