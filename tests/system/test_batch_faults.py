"""Faults under batches: an accepted batch survives a hard kill of Valkey in strict mode."""

from __future__ import annotations

import base64

from redis.asyncio import Redis

from shared.embedded import EmbeddedValkey
from shared.keys import Keys
from tests.conftest import SettingsFactory
from tests.support.images import label_png
from tests.system.test_faults import accepted_before_kill

BODY = {
    "scans": [{"product_name": f"p{i}"} for i in range(100)],
    "defaults": {
        "image_base64": base64.b64encode(label_png()).decode(),
        "category": "toys",
        "marketplaces": ["US"],
    },
}


async def test_strict_batches_survive_hard_kill(
    own_valkey: EmbeddedValkey, make_settings: SettingsFactory
) -> None:
    """In strict mode every batch answered 202 before `kill -9` is whole after the restart."""
    settings = make_settings(redis_url=own_valkey.url, durability="strict")
    replies = await accepted_before_kill(own_valkey, settings, "/api/batches", BODY, 3)
    redis = Redis.from_url(own_valkey.url)
    keys = Keys(settings.prefix)
    try:
        for reply in replies:
            batch_id, scan_ids = reply.json()["batch_id"], reply.json()["scan_ids"]
            assert await redis.hget(keys.only.batch(batch_id), "total") == b"100"
            assert await redis.llen(keys.only.batch_scans(batch_id)) == 100
            states = [await redis.hget(keys.scan(s), "state") for s in scan_ids]
            assert states == [b"queued"] * 100
        assert await redis.xlen(keys.requests("normal")) == 300
    finally:
        await redis.aclose()
