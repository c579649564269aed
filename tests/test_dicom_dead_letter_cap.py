"""With a broker, the dead letter is a Redis list with a cap so that it cannot fill Redis's memory.
A PACS that refuses everything for an afternoon fills it with results, which the node can make
again. A received radiograph that could not be analysed is another matter: the node acknowledged
it, and its dead letter is its only copy. It must survive any number of refused results, and
whatever the cap does drop is logged and counted for the operator to see.
"""
from __future__ import annotations

import json
import logging

from prometheus_client import REGISTRY
from redis import Redis

from fracture_web.dicom_node.dead_letter import RECEIVED_KEY, REDIS_KEEP, REDIS_KEY, to_redis

from servers import redis_server
from test_dicom_node_faults import needs_redis


def dropped(reason: str) -> float:
    return REGISTRY.get_sample_value("fracture_dead_letters_dropped_total", {"reason": reason}) or 0.0


def payloads(client: Redis, key: str) -> list[str]:
    return [json.loads(entry)["payload"] for entry in client.lrange(key, 0, -1)]


@needs_redis
def test_a_set_aside_radiograph_outlives_an_afternoon_of_refused_results_and_what_the_cap_drops_is_counted(
        tmp_path, caplog):
    before = dropped("refused")
    with redis_server(tmp_path) as url, caplog.at_level(logging.WARNING):
        client = Redis.from_url(url)
        to_redis(client, "analysis_failed", "a received radiograph", "THE-ONLY-COPY", ValueError("bad pixels"))
        for i in range(REDIS_KEEP + 5):  # the PACS refuses every result for hours
            to_redis(client, "refused", "a result object", f"result-{i}", "C-STORE status 0xA700")
        assert payloads(client, RECEIVED_KEY) == ["THE-ONLY-COPY"]  # never dropped
        kept = payloads(client, REDIS_KEY)
    assert len(kept) == REDIS_KEEP and kept[0] == f"result-{REDIS_KEEP + 4}" and "result-4" not in kept
    assert dropped("refused") == before + 5  # the operator sees that results were dropped, and why
    assert caplog.text.count("dead letter list full") == 5


@needs_redis
def test_a_radiograph_an_earlier_version_left_in_the_capped_list_is_moved_aside_not_dropped(tmp_path):
    with redis_server(tmp_path) as url:
        client = Redis.from_url(url)
        old = json.dumps({"reason": "analysis_failed", "what": "a received radiograph", "payload": "OLD-IMAGE"})
        client.lpush(REDIS_KEY, old, *[json.dumps({"reason": "refused", "payload": i}) for i in range(REDIS_KEEP - 1)])
        to_redis(client, "refused", "a result object", "one more", "refused")
        assert payloads(client, RECEIVED_KEY) == ["OLD-IMAGE"]
        assert len(payloads(client, REDIS_KEY)) == REDIS_KEEP
