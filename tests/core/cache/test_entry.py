from __future__ import annotations

import gzip
import json

from services.core.cache.entry import Entry, build_entry


def make(body: bytes) -> Entry:
    return build_entry(
        status=200,
        content_type=b"application/json",
        body=body,
        tags=("products",),
        ttl_s=60,
        stale_s=30,
        now=0.0,
        compress_min_bytes=1024,
        gzip_level=5,
    )


def test_large_bodies_are_compressed_once_small_ones_not() -> None:
    big = json.dumps([{"id": i, "name": f"Widget {i}"} for i in range(100)]).encode()
    entry = make(big)
    assert entry.gzip_body is not None
    assert gzip.decompress(entry.gzip_body) == big
    assert len(entry.gzip_body) < len(big) / 3
    assert make(b'{"id": 1}').gzip_body is None


def test_compression_and_etags_are_deterministic() -> None:
    body = b'{"items": [' + b'{"id": 1},' * 200 + b'{"id": 2}]}'
    first, second = make(body), make(body)
    assert first.gzip_body == second.gzip_body
    assert first.etag == second.etag
    assert first.etag.startswith(b'"')
    assert first.gzip_etag != first.etag


def test_meta_round_trips() -> None:
    entry = make(b"x" * 2000)
    again = Entry.from_stored(
        entry.to_meta().encode(),
        entry.body,
        entry.gzip_body or b"",
        age_s=5,
        ttl_s=60,
        now=100.0,
    )
    assert again.etag == entry.etag
    assert again.tags == entry.tags
    assert again.gzip_body == entry.gzip_body
    assert again.age(100.0) == 5
