"""A stored response: the encoded bytes, ready to send, never re-serialized per hit.

Compression happens here, once, when the entry is built: a hit only picks the stored
gzip or identity bytes. ETags are strong and derived from the identity body, so every
process computes the same ETag for the same response; the gzip representation gets its
own (``-gz``), as RFC 9110 requires of different content codings.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Entry:
    status: int
    content_type: bytes
    body: bytes
    gzip_body: bytes | None
    etag: bytes
    tags: tuple[str, ...]
    # Local ``time.monotonic()`` at which the entry was computed (now - its age).
    born: float
    ttl_s: float
    stale_s: float
    vary: bytes = b"Accept-Encoding"
    # The headers that never change between hits, per representation.
    identity_headers: list[tuple[bytes, bytes]] = field(init=False, repr=False)
    gzip_headers: list[tuple[bytes, bytes]] | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        base = [(b"content-type", self.content_type), (b"vary", self.vary)]
        identity = [
            *base,
            (b"content-length", str(len(self.body)).encode()),
            (b"etag", self.etag),
        ]
        object.__setattr__(self, "identity_headers", identity)
        compressed = None
        if self.gzip_body is not None:
            compressed = [
                *base,
                (b"content-encoding", b"gzip"),
                (b"content-length", str(len(self.gzip_body)).encode()),
                (b"etag", self.gzip_etag),
            ]
        object.__setattr__(self, "gzip_headers", compressed)

    @property
    def gzip_etag(self) -> bytes:
        return self.etag[:-1] + b'-gz"'

    def age(self, now: float) -> float:
        return max(0.0, now - self.born)

    def to_meta(self) -> str:
        """Everything but the bodies, for the L2 hash's ``meta`` field."""
        return json.dumps(
            {
                "status": self.status,
                "content_type": self.content_type.decode("latin-1"),
                "etag": self.etag.decode("latin-1"),
                "tags": list(self.tags),
                "stale_s": self.stale_s,
                "vary": self.vary.decode("latin-1"),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_stored(
        cls, meta: bytes, body: bytes, gzip_body: bytes, *, age_s: float, ttl_s: float, now: float
    ) -> Entry:
        data = json.loads(meta)
        return cls(
            status=int(data["status"]),
            content_type=str(data["content_type"]).encode("latin-1"),
            body=body,
            gzip_body=gzip_body or None,
            etag=str(data["etag"]).encode("latin-1"),
            tags=tuple(data["tags"]),
            born=now - age_s,
            ttl_s=ttl_s,
            stale_s=float(data["stale_s"]),
            vary=str(data["vary"]).encode("latin-1"),
        )


def etag_for(body: bytes) -> bytes:
    return b'"' + hashlib.blake2b(body, digest_size=12).hexdigest().encode() + b'"'


def build_entry(
    *,
    status: int,
    content_type: bytes,
    body: bytes,
    tags: tuple[str, ...],
    ttl_s: float,
    stale_s: float,
    vary: tuple[str, ...] = (),
    now: float,
    compress_min_bytes: int,
    gzip_level: int,
) -> Entry:
    compressed = None
    if len(body) >= compress_min_bytes:
        # mtime=0: the same body gives the same bytes in every process.
        candidate = gzip.compress(body, compresslevel=gzip_level, mtime=0)
        if len(candidate) < len(body):
            compressed = candidate
    return Entry(
        status=status,
        content_type=content_type,
        body=body,
        gzip_body=compressed,
        etag=etag_for(body),
        tags=tags,
        born=now,
        ttl_s=ttl_s,
        stale_s=stale_s,
        vary=", ".join(("Accept-Encoding", *vary)).encode("latin-1"),
    )
