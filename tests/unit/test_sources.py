"""Which producer may write for which account: the source topics, their allow-lists and the pipeline's decision."""

from __future__ import annotations

from typing import Any

import pytest

from kafkatrail.core.settings import Settings
from kafkatrail.core.topics import topic_specs
from kafkatrail.processors.dedupe import DedupeWindow
from kafkatrail.processors.pipeline import EventPipeline, InputMessage
from kafkatrail.processors.selectors import Selection
from kafkatrail.processors.sources import UNAUTHORIZED_ACCOUNT, AccountAllowList, SourcePolicy
from kafkatrail.schemas.codec import decode_event, encode_event
from tests.unit.test_pipeline import TRAILS, message, record

TEAM_A = "cloudtrail.events.team-a"
TEAM_B = "cloudtrail.events.team-b"


def two_sources(**top: Any) -> Settings:
    return Settings(processors={"sources": [{"name": "team-a", "accounts": ["111111111111", "444444444444"]},
                                            {"name": "team-b", "accounts": ["333333333333"]}]}, **top)


def test_without_sources_the_one_events_topic_is_read_and_every_account_allowed() -> None:
    policy = SourcePolicy.from_settings(Settings())
    assert policy.open
    assert policy.changelogs == {"cloudtrail.events": "cloudtrail.processors.dedupe-changelog"}
    assert policy.allow_list("cloudtrail.events") is None


def test_each_source_is_a_topic_with_a_changelog_of_its_own_and_the_shared_topic_is_not_read() -> None:
    policy = SourcePolicy.from_settings(two_sources())
    assert not policy.open
    assert policy.changelogs == {TEAM_A: "cloudtrail.processors.dedupe-changelog.team-a",
                                 TEAM_B: "cloudtrail.processors.dedupe-changelog.team-b"}
    assert "cloudtrail.events" not in policy.changelogs


DECISIONS = [  # (topic, recipientAccountId, allowed)
    (TEAM_A, "111111111111", True),
    (TEAM_A, "444444444444", True),
    (TEAM_A, "333333333333", False),  # team-b's account
    (TEAM_A, "222222222222", False),  # nobody's
    (TEAM_B, "333333333333", True),
    (TEAM_B, "111111111111", False),
    ("cloudtrail.events", "111111111111", False),  # not a source: refused, not waved through
    ("cloudtrail.events.team-c", "111111111111", False),
]


@pytest.mark.parametrize(("topic", "account", "allowed"), DECISIONS)
def test_the_allow_list_decision(topic: str, account: str, allowed: bool) -> None:
    allow = SourcePolicy.from_settings(two_sources()).allow_list(topic)
    assert allow is not None
    assert allow.allows(account) is allowed


@pytest.mark.parametrize(("topic", "account", "allowed"), DECISIONS)
def test_the_pipeline_delivers_allowed_records_and_dead_letters_the_others(
        topic: str, account: str, allowed: bool) -> None:
    allow = SourcePolicy.from_settings(two_sources()).allow_list(topic)
    window = DedupeWindow(86_400, 3_600)
    outcome = EventPipeline(decode_event, Selection(TRAILS)).process(
        [message(encode_event(record(recipientAccountId=account)))], window, allow)
    if allowed:
        assert outcome.rejected == []
        assert {key.decode().split("|")[1] for key, _ in outcome.deliveries} == {account}
        assert len(window) == 1
    else:
        assert [(r.reason, r.reason_label) for r in outcome.rejected] == [(UNAUTHORIZED_ACCOUNT,) * 2]
        assert outcome.rejected[0].detail == (f"recipientAccountId: account {account} is not on the allow-list of "
                                              f"source topic {topic}")
        assert outcome.deliveries == []
        assert len(window) == 0 and not outcome.first_seen  # a refused record never enters the window


def test_a_refused_record_does_not_hide_a_later_allowed_copy_of_its_event_id() -> None:
    allow = AccountAllowList(TEAM_A, frozenset({"111111111111"}))
    foreign = message(encode_event(record(recipientAccountId="222222222222")), 0)
    own = message(encode_event(record(recipientAccountId="111111111111")), 1)
    outcome = EventPipeline(decode_event, Selection(TRAILS)).process([foreign, own], DedupeWindow(86_400, 3_600),
                                                                     allow)
    assert [r.message.offset for r in outcome.rejected] == [0]
    assert outcome.duplicates == 0 and outcome.deliveries


def test_an_invalid_record_keeps_its_own_reason_whatever_its_account() -> None:
    allow = AccountAllowList(TEAM_A, frozenset({"111111111111"}))
    bad = InputMessage(encode_event(record(recipientAccountId="222222222222", eventTime="soon")), b"k", 0.0, 0)
    outcome = EventPipeline(decode_event, Selection(TRAILS)).process([bad], DedupeWindow(86_400, 3_600), allow)
    assert [r.reason for r in outcome.rejected] == ["invalid.eventTime.format"]


def test_without_an_allow_list_every_account_passes() -> None:
    accounts = ["111111111111", "222222222222", "999999999999"]
    event_ids = [f"0d9b7a2e-5c41-4f0e-9a3b-2f6c8d1e7a9{i}" for i in range(len(accounts))]
    messages = [message(encode_event(record(event_id=event_id, recipientAccountId=account)), i, key=event_id.encode())
                for i, (event_id, account) in enumerate(zip(event_ids, accounts, strict=True))]
    outcome = EventPipeline(decode_event, Selection(TRAILS)).process(messages, DedupeWindow(86_400, 3_600))
    assert outcome.rejected == []
    assert {key.decode().split("|")[1] for key, _ in outcome.deliveries} == set(accounts)


def test_topics_create_makes_each_source_topic_and_its_changelog() -> None:
    specs = {spec.topic: spec for spec in topic_specs(two_sources(topic_partitions=4))}
    assert {TEAM_A, TEAM_B, "cloudtrail.processors.dedupe-changelog.team-a",
            "cloudtrail.processors.dedupe-changelog.team-b"} <= set(specs)
    changelog = specs["cloudtrail.processors.dedupe-changelog.team-a"]
    assert changelog.config == specs["cloudtrail.processors.dedupe-changelog"].config
    assert {spec.num_partitions for spec in specs.values()} == {4}
    assert specs[TEAM_A].config == {"message.timestamp.type": "LogAppendTime"}  # dedupe runs on the broker's clock
    assert len(topic_specs(Settings())) == 13
