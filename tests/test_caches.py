"""The registry of process-local caches: every cache registers itself, and `reset_all()`
forgets them all (what the test fixtures call between tests)."""

from __future__ import annotations

import time

from loyalty.infrastructure import caches
from loyalty.marketing import bonus
from loyalty.points import service as points
from loyalty.staff import service as staff
from loyalty.tiers import ladder as tiers
from loyalty.webhooks import service as webhooks


def test_the_configuration_caches_are_registered() -> None:
    names = caches.registered()
    for cache in (
        points._rules_cache,
        tiers._cache,
        bonus._cache,
        staff._api_key_checks,
        webhooks._subscribed,
    ):
        assert cache.name in names


def test_reset_all_forgets_every_value() -> None:
    one: caches.Cache[int] = caches.Cache("test one")
    many: caches.KeyedCache[str, int] = caches.KeyedCache("test many", kept=10)
    one.put(1)
    many.put("a", 2)
    assert one.get(60) == 1 and many.get("a", 60) == 2
    caches.reset_all()
    assert one.get(60) is None and many.get("a", 60) is None


def test_a_value_is_kept_for_the_age_asked_on_reading() -> None:
    cache: caches.Cache[str] = caches.Cache("test age")
    cache.put("x")
    time.sleep(0.02)
    assert cache.get(60) == "x"
    assert cache.get(0.01) is None


def test_a_full_keyed_cache_starts_again_empty() -> None:
    cache: caches.KeyedCache[int, int] = caches.KeyedCache("test full", kept=2)
    cache.put(1, 1)
    cache.put(2, 2)
    cache.put(3, 3)
    assert (cache.get(1, 60), cache.get(2, 60), cache.get(3, 60)) == (None, None, 3)
    cache.discard(3)
    assert cache.get(3, 60) is None
