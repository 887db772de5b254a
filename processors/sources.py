"""Which producer may write for which account: the processor's source topics and their account allow-lists.

Producers authenticate to Kafka (SASL/SCRAM), and each producer principal writes an events topic of its own,
`<topic_prefix>.events.<name>`, that a Kafka ACL lets only that principal write. `processors.sources` names
these topics and, for each, the AWS accounts its producer may write records for. The processor reads every
source topic, and a valid record whose owning account (`recipientAccountId`, the account whose log files
receive it; docs/cloudtrail.md §1) is not on its topic's allow-list goes to the dead-letter topic with reason
`unauthorized.account` instead of being deduplicated or delivered. Kafka's ACL says who wrote a topic;
this check says what that writer may claim.

With no sources (the default, and the local stack) the processor reads the one events topic and every
account is allowed, as before.

Each source topic has its own dedupe changelog (`<topic_prefix>.processors.dedupe-changelog.<name>`,
co-partitioned with it) and the processor keeps one dedupe window per (topic, partition): partition 0 of
two sources are two windows. So one principal can neither suppress another's events by writing their
eventIDs first nor see its own records dropped as duplicates of another's.

Nothing here touches Kafka; `processors/worker.py` wires it into the transactional loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kafkatrail.core.settings import Settings

UNAUTHORIZED_ACCOUNT = "unauthorized.account"
"""The dead-letter reason of a record for an account its source topic may not write for."""

OWNER_FIELD = "recipientAccountId"
"""The member of a CloudTrail record that names the account it belongs to."""


@dataclass(frozen=True, slots=True)
class AccountAllowList:
    """The accounts one source topic may write records for."""

    topic: str
    accounts: frozenset[str]

    def allows(self, account: str) -> bool:
        return account in self.accounts

    def refusal(self, account: str) -> str:
        """The detail of the dead letter of a record for `account`, naming the field and the rule."""
        return f"{OWNER_FIELD}: account {account} is not on the allow-list of source topic {self.topic}"


@dataclass(frozen=True)
class SourcePolicy:
    """The topics a processor reads, each with its dedupe changelog and its allow-list (None: every account)."""

    changelogs: Mapping[str, str]
    allow_lists: Mapping[str, AccountAllowList | None]

    @classmethod
    def from_settings(cls, settings: Settings) -> SourcePolicy:
        topics = settings.topics
        sources = settings.processors.sources
        if not sources:
            return cls({topics.events: topics.dedupe_changelog}, {topics.events: None})
        return cls(
            {topics.source(s.name): topics.source_changelog(s.name) for s in sources},
            {topics.source(s.name): AccountAllowList(topics.source(s.name), frozenset(s.accounts)) for s in sources},
        )

    @property
    def open(self) -> bool:
        """True when no sources are configured: one topic, every account allowed."""
        return all(allow is None for allow in self.allow_lists.values())

    def allow_list(self, topic: str) -> AccountAllowList | None:
        """The allow-list of `topic`; None means every account. A topic that is not a source allows none: a
        record from anywhere else is refused, not waved through."""
        try:
            return self.allow_lists[topic]
        except KeyError:
            return AccountAllowList(topic, frozenset())
