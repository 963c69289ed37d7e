"""The audit head on the Kafka stream (issue 17): with Kafka configured, the head the audit
projection publishes in the signed head file also goes out as a CloudEvent holding the
position and the entry hash only."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from kafka import KafkaConsumer, TopicPartition

from adapters.audit_head import EVENT_TYPE, KAFKA_TOPIC
from api.app import create_app
from api.services import audit_head_path
from conftest import bearer, make_settings, register_patient, token_for, wait_until


def _heads(bootstrap: str) -> list[tuple[dict, dict]]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(KAFKA_TOPIC, p)
                      for p in sorted(consumer.partitions_for_topic(KAFKA_TOPIC) or ())]
        if not partitions:
            return []
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        found = []
        for records in consumer.poll(timeout_ms=1000).values():
            found += [({k: v.decode() for k, v in r.headers}, json.loads(r.value))
                      for r in records]
        return found
    finally:
        consumer.close()


def test_the_audit_head_goes_out_on_kafka_without_phi(database_factory, tmp_path,
                                                      kafka_bootstrap):
    marker = "Phimarkerhead"
    settings = make_settings(database_factory(), tmp_path, kafka_bootstrap=kafka_bootstrap)
    headers = bearer(token_for(settings, "doctor", "clinic-head"))
    with TestClient(create_app(settings)) as client:
        register_patient(client, headers, given_name=marker, family_name=marker)
        services = client.app.state.services
        services.audit.wait(services.app.name, services.app.recorder.max_notification_id(),
                            timeout=30)
    head = json.loads(audit_head_path(settings).read_text())
    mine = wait_until(lambda: [(h, d) for h, d in _heads(kafka_bootstrap)
                               if d.get("entryHash") == head["entry_hash"]])
    attributes, data = mine[-1]
    assert data == {"position": head["position"], "entryHash": head["entry_hash"]}
    assert attributes["ce_type"] == EVENT_TYPE and attributes["ce_specversion"] == "1.0"
    assert all(marker.lower() not in json.dumps(d).lower() for _, d in _heads(kafka_bootstrap))
