"""Links into orcasite (live.orcasound.net), where a moderator listens to a node's stream at a
UTC time: the bout page ``https://live.orcasound.net/bouts/new/<feed slug>?time=<ISO UTC>``
(the form pods-ai's ``get_best_timestamp.py`` produces: milliseconds, ``Z``, URL-encoded).

A feed's slug is its node name without ``rpi_``, with ``-`` for ``_`` (orcasite's seeds:
``rpi_orcasound_lab`` -> ``orcasound-lab``, ``rpi_north_sjc`` -> ``north-sjc``); the node is the
path component before ``hls`` in an HLS folder (``.../rpi_orcasound_lab/hls/1700000000/``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import quote

BOUT_URL = "https://live.orcasound.net/bouts/new/{slug}?time={time}"


def node_of_stream(stream: str | None) -> str | None:
    """The node name of an HLS folder URL or path (the component before ``hls``), or None."""
    if not stream:
        return None
    parts = [p for p in stream.rstrip("/").split("/") if p]
    if "hls" not in parts:
        return None
    at = len(parts) - 1 - parts[::-1].index("hls")
    return parts[at - 1] if at > 0 else None


def feed_slug(node: str | None) -> str | None:
    """orcasite's feed slug of a node (``rpi_bush_point`` -> ``bush-point``); None for a node
    that is not an Orcasound Raspberry Pi node (no ``rpi_`` prefix)."""
    if not node or not node.startswith("rpi_") or len(node) <= 4:
        return None
    return node[4:].replace("_", "-")


def bout_url(stream: str | None, utc: datetime | None, slug: str | None = None) -> str:
    """The bout page of the node of ``stream`` at ``utc`` (a timezone-aware datetime); "" when
    the stream is not an Orcasound node's or the time is unknown. ``slug``: the feed slug to
    use instead of the one derived from the node's name."""
    slug = slug or feed_slug(node_of_stream(stream))
    if slug is None or utc is None:
        return ""
    time = utc.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return BOUT_URL.format(slug=slug, time=quote(time, safe=""))
