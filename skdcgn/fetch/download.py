"""Downloading one file over HTTP(S) into a `HashingWriter`, resuming a body that was cut short.

A connection cut mid-body is resumed with a Range request from the bytes already written (206), or restarted
from zero where the server ignores Range (200), a bounded number of times. Anything else (an HTTP error, a
refused or timed-out connection) fails the origin at once: the caller moves on to the next one.
"""

from __future__ import annotations

import http.client
import re
import urllib.error
import urllib.request

from skdcgn.fetch.install import CHUNK_BYTES, Fill, HashingWriter, OriginFailed, few_words
from skdcgn.utils.progress import progress

# The machines this runs on are often offline: an unreachable host must fail within seconds, not minutes.
TIMEOUT_S = 10.0
ATTEMPTS = 3  # requests per origin: the first, then resumes of a body cut short
PROGRESS_EVERY = 1 << 20  # a plain progress line at most every MiB (or every tenth of a large file)
USER_AGENT = "skdcgn-fetch"
_CONTENT_RANGE = re.compile(r"bytes (\d+)-\d+/(\d+|\*)")


def http_origin(url: str) -> Fill:
    return lambda writer: download(url, writer)


def download(url: str, writer: HashingWriter) -> None:
    """All of `url` into `writer`; raises OriginFailed with why it could not."""
    for _ in range(ATTEMPTS):
        cut = _attempt(url, writer)
        if cut is None:
            return
    raise OriginFailed(f"{cut}, {ATTEMPTS} times")


def _attempt(url: str, writer: HashingWriter) -> str | None:
    """One request, continuing from what `writer` holds. None once the body is whole; else how it was cut."""
    with _open(url, writer.size) as response:
        # No asset is a web page: one here is a host's quota, sign-in or error page, which a file without a
        # published sha256 (the ImageNet CGN on Google Drive) would otherwise be taken for.
        if response.headers.get_content_type() == "text/html":
            raise OriginFailed("a web page instead of the file (a quota or sign-in page?)")
        total = _continue_from(response, writer)
        every = max(PROGRESS_EVERY, (total or 0) // 10)
        with progress(f"download {url} (bytes)", total or 0, every=every) as advance:
            advance(writer.size)
            while True:
                # Only reading is guarded: a full disk while writing is no cut connection, and is not retried.
                try:
                    chunk = response.read(CHUNK_BYTES)
                except (OSError, http.client.HTTPException) as error:  # reset, timed out, or IncompleteRead
                    return f"cut at {writer.size} bytes: {few_words(error)}"
                if not chunk:
                    break
                writer.write(chunk)
                advance(len(chunk))
    # http.client ends a body that is shorter than its Content-Length quietly: only the count tells.
    if total is not None and writer.size < total:
        return f"truncated at {writer.size} of {total} bytes"
    return None


def _open(url: str, offset: int) -> http.client.HTTPResponse:
    headers = {"User-Agent": USER_AGENT, **({"Range": f"bytes={offset}-"} if offset else {})}
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)
    except urllib.error.HTTPError as error:  # before URLError, its base class
        error.close()
        raise OriginFailed(f"HTTP {error.code} {error.reason}") from error
    except urllib.error.URLError as error:  # refused, unknown host, timed out while connecting
        raise OriginFailed(few_words(error.reason)) from error
    except (OSError, http.client.HTTPException) as error:  # timed out or cut while reading the headers
        raise OriginFailed(few_words(error)) from error


def _continue_from(response: http.client.HTTPResponse, writer: HashingWriter) -> int | None:
    """The file's whole size where the server says it (None where not), after making `writer` hold what this
    response continues: a 206 appends to it, any other success sends the file from its first byte."""
    if response.status != 206:
        if writer.size:
            writer.restart()
        length = response.headers.get("Content-Length")
        return int(length) if length and length.isdigit() else None
    match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
    if not match or int(match[1]) != writer.size:
        raise OriginFailed(f"206 with Content-Range {response.headers.get('Content-Range')!r}, "
                           f"not from byte {writer.size}")
    return None if match[2] == "*" else int(match[2])
