"""Stampede / Cache: is the response cache doing its job?"""

from __future__ import annotations

from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models.dashboard import Dashboard, Panel

from devstack.release.dashboards.shared import Section, board, stat_panel, timeseries_panel

# Every cacheable lookup per route: hits, misses and stale serves. A route has no stale
# series until its first stale serve, so its misses times zero stand in (or the sum is empty).
LOOKUPS_BY_ROUTE = (
    "sum by (route) (rate(stampede_cache_hits_total{$scope}[$__rate_interval]))"
    " + sum by (route) (rate(stampede_cache_misses_total{$scope}[$__rate_interval]))"
    " + (sum by (route) (rate(stampede_cache_stale_total{$scope}[$__rate_interval]))"
    " or sum by (route) (rate(stampede_cache_misses_total{$scope}[$__rate_interval])) * 0)"
)


def build() -> Dashboard:
    return board(
        "cache",
        "Stampede / Cache",
        "Is the response cache doing its job? Hit ratio by route, stampede protection, "
        "Redis health.",
        [
            Section("Response cache", _response_cache()),
            Section("Cache Redis", _cache_redis()),
        ],
    )


def _response_cache() -> list[Builder[Panel]]:
    return [
        stat_panel(
            "Hit ratio",
            "Share of cacheable requests answered from the cache (L1 or Redis). "
            "Alert: collapse to half of an hour ago.",
            unit="percentunit",
            span=6,
            queries={
                "hit ratio": (
                    "sum(rate(stampede_cache_hits_total{$scope}[$__rate_interval]))"
                    f" / sum(({LOOKUPS_BY_ROUTE}))"
                ),
            },
        ).decimals(1),
        stat_panel(
            "Served from L1",
            "Share of hits answered from the in-process tier, without a Redis round trip.",
            unit="percentunit",
            span=6,
            queries={
                "L1 share": (
                    'sum(rate(stampede_cache_hits_total{$scope, tier="l1"}[$__rate_interval]))'
                    " / sum(rate(stampede_cache_hits_total{$scope}[$__rate_interval]))"
                )
            },
        ).decimals(1),
        stat_panel(
            "Cache errors / s",
            "Redis operations of the cache that failed or timed out; requests went on to the "
            "database.",
            unit="ops",
            span=6,
            queries={
                "errors": "sum(rate(stampede_cache_errors_total{$scope}[$__rate_interval]))"
                " or vector(0)"
            },
            thresholds={"orange": 0.1, "red": 1},
        ),
        stat_panel(
            "Stale serves / s",
            "Expired entries served while a single request recomputed them (stampede "
            "protection at work).",
            unit="ops",
            span=6,
            queries={
                "stale": "sum(rate(stampede_cache_stale_total{$scope}[$__rate_interval]))"
                " or vector(0)"
            },
        ),
        timeseries_panel(
            "Hit ratio by route",
            "Per cached route; a route near 0 is misconfigured or invalidated too often.",
            unit="percentunit",
            span=12,
            queries={
                "{{route}}": (
                    "sum by (route) (rate(stampede_cache_hits_total{$scope}[$__rate_interval]))"
                    f" / ({LOOKUPS_BY_ROUTE})"
                )
            },
        )
        .min(0)
        .max(1),
        timeseries_panel(
            "Lookups / s by outcome",
            "Hits by tier, misses (the route ran) and stale serves.",
            unit="ops",
            span=12,
            queries={
                "hit {{tier}}": (
                    "sum by (tier) (rate(stampede_cache_hits_total{$scope}[$__rate_interval]))"
                ),
                "miss": "sum(rate(stampede_cache_misses_total{$scope}[$__rate_interval]))",
                "stale": (
                    "sum(rate(stampede_cache_stale_total{$scope}[$__rate_interval])) or vector(0)"
                ),
            },
            stacked=True,
        ),
        timeseries_panel(
            "L1 evictions / s by route",
            "Entries pushed out of the bounded in-process tier; steady evictions mean "
            "l1_max_entries is too small.",
            unit="ops",
            span=12,
            queries={
                "{{route}}": (
                    "sum by (route)"
                    " (rate(stampede_cache_l1_evictions_total{$scope}[$__rate_interval]))"
                    " or vector(0)"
                )
            },
        ),
        timeseries_panel(
            "Cache errors / s by operation",
            "Failed or timed-out Redis operations (the circuit breaker opens after a few).",
            unit="ops",
            span=12,
            queries={
                "{{operation}}": (
                    "sum by (operation)"
                    " (rate(stampede_cache_errors_total{$scope}[$__rate_interval]))"
                    " or vector(0)"
                )
            },
        ),
    ]


def _cache_redis() -> list[Builder[Panel]]:
    return [
        timeseries_panel(
            "Memory",
            "Used memory against maxmemory: the cache is meant to sit at its limit and evict.",
            unit="bytes",
            span=8,
            queries={
                "used": 'max(redis_memory_used_bytes{$scope, component="cache"})',
                "max": 'max(redis_memory_max_bytes{$scope, component="cache"})',
            },
        ),
        timeseries_panel(
            "Evictions / s",
            "Keys evicted by LRU to make room: normal for the cache, never for the broker.",
            unit="ops",
            span=8,
            queries={
                "evicted": (
                    "sum(rate(redis_evicted_keys_total"
                    '{$scope, component="cache"}[$__rate_interval]))'
                )
            },
        ),
        timeseries_panel(
            "Commands / s",
            "Redis operations per second.",
            unit="ops",
            span=8,
            queries={
                "commands": (
                    "sum(rate(redis_commands_processed_total"
                    '{$scope, component="cache"}[$__rate_interval]))'
                )
            },
        ),
        timeseries_panel(
            "Keys",
            "Keys in the cache Redis (entries, locks, tag markers).",
            unit="short",
            span=8,
            queries={"keys": 'sum(redis_db_keys{$scope, component="cache"})'},
        ),
        timeseries_panel(
            "Connected clients",
            "Connections from the api processes (pools and the invalidation subscriber).",
            unit="short",
            span=8,
            queries={"clients": 'sum(redis_connected_clients{$scope, component="cache"})'},
        ),
        stat_panel(
            "Redis up",
            "The exporter reaches the cache Redis.",
            unit="bool",
            span=8,
            height=8,
            queries={"up": 'min(redis_up{$scope, component="cache"})'},
        ),
    ]
