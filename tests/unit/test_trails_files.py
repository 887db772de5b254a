"""Trail definition files: JSON and YAML, their defaults, and one clear error per bad file."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from kafkatrail.trails.definitions import load_trails, parse_trails
from kafkatrail.trails.errors import TrailError
from kafkatrail.trails.model import Trail

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "trails.example.yaml"


def entry(name: str = "audit", **members: Any) -> dict[str, Any]:
    return {"Name": name, "HomeRegion": "eu-west-1", "AccountId": "111122223333", "S3BucketName": "audit-bucket",
            **members}


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def failure(path: Path) -> TrailError:
    with pytest.raises(TrailError) as caught:
        load_trails(path)
    assert caught.value.message.startswith(f"{path}: "), caught.value.message
    return caught.value


def test_example_file_validates() -> None:
    trails = load_trails(EXAMPLE)
    assert [t.name for t in trails] == ["management-events", "finance-data-events", "security-writes"]
    management, data, advanced = trails
    assert management.is_multi_region_trail and management.event_selectors is None
    assert management.advanced_event_selectors is None
    assert data.event_selectors is not None and data.event_selectors[0]["DataResources"]
    assert advanced.advanced_event_selectors is not None and len(advanced.advanced_event_selectors) == 3
    assert all(t.logging for t in trails)


def test_json_and_yaml_give_the_same_trails(tmp_path: Path) -> None:
    document = {"Trails": [entry(EventSelectors=[{"ReadWriteType": "WriteOnly"}]),
                           entry("second", HomeRegion="us-east-1", IsMultiRegionTrail=True)]}
    from_json = load_trails(write(tmp_path, "trails.json", json.dumps(document)))
    from_yaml = load_trails(write(tmp_path, "trails.yaml", yaml.safe_dump(document)))
    from_yml = load_trails(write(tmp_path, "trails.yml", yaml.safe_dump(document)))
    assert from_json == from_yaml == from_yml == parse_trails(document)
    assert from_json[0].event_selectors == ({"ReadWriteType": "WriteOnly"},)
    assert from_json[1].arn == "arn:aws:cloudtrail:us-east-1:111122223333:trail/second"


def test_defaults_of_a_minimal_entry() -> None:
    (only,) = parse_trails({"Trails": [entry()]})
    assert only == Trail(name="audit", home_region="eu-west-1", account_id="111122223333",
                         s3_bucket_name="audit-bucket")
    assert only.logging is True
    assert (only.include_global_service_events, only.is_multi_region_trail) == (True, False)
    assert (only.log_file_validation_enabled, only.is_organization_trail, only.recursive_logging) == (
        False, False, True)


def test_file_members_map_to_the_model() -> None:
    (only,) = parse_trails({"Trails": [entry(
        IsLogging=False, EnableLogFileValidation=True, S3KeyPrefix="logs", SnsTopicName="files",
        KmsKeyId="alias/trail", IsOrganizationTrail=True, RecursiveLogging=False, TagsList=[{"Key": "a"}],
        InsightSelectors=[{"InsightType": "ApiErrorRateInsight"}], HomeRegion="cn-north-1",
    )]})
    assert (only.logging, only.log_file_validation_enabled, only.s3_key_prefix) == (False, True, "logs")
    assert (only.sns_topic_name, only.kms_key_id, only.is_organization_trail) == ("files", "alias/trail", True)
    assert (only.recursive_logging, only.tags) == (False, ({"Key": "a"},))
    assert only.insight_selectors == ({"InsightType": "ApiErrorRateInsight"},)
    assert only.partition == "aws-cn"


def test_null_members_count_as_absent(tmp_path: Path) -> None:
    path = write(tmp_path, "trails.yaml", """
Trails:
  - Name: audit
    HomeRegion: eu-west-1
    AccountId: "111122223333"
    S3BucketName: audit-bucket
    S3KeyPrefix:
    IsMultiRegionTrail: null
    EventSelectors: ~
""")
    (only,) = load_trails(path)
    assert (only.s3_key_prefix, only.is_multi_region_trail, only.event_selectors) == (None, False, None)


def test_yaml_aliases_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "trails.yaml", """
Trails:
  - &first
    Name: first
    HomeRegion: eu-west-1
    AccountId: "111122223333"
    S3BucketName: audit-bucket
  - <<: *first
    Name: second
""")
    error = failure(path)
    assert "aliases (*name) are not allowed in a trail file" in error.message, error.message


BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)) + "Trails: *i\n"


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        ("trails.yaml", BILLION_LAUGHS, "aliases (*name) are not allowed"),
        ("trails.json", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("trails.yaml", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("trails.json", '{"Trails": []}' + " " * (1 << 20), "a trail file holds at most 1,048,576 bytes"),
    ],
    ids=["an alias bomb", "deep JSON", "deep YAML", "an oversized file"],
)
def test_hostile_files_are_refused_quickly_and_clearly(tmp_path: Path, name: str, text: str, fragment: str) -> None:
    began = time.monotonic()
    error = failure(write(tmp_path, name, text))
    assert fragment in error.message, error.message
    assert len(error.message) < 500, "the error quotes no large value"
    assert time.monotonic() - began < 5


def test_empty_trail_list() -> None:
    assert parse_trails({"Trails": []}) == ()


@pytest.mark.parametrize(
    ("name", "text", "code", "fragment"),
    [
        ("trails.yaml", "Trails: [\n", "InvalidParameterException", "not a valid YAML file"),
        ("trails.json", '{"Trails": [}', "InvalidParameterException", "not a valid JSON file"),
        ("trails.json", b'{"Trails": ["\xff"]}', "InvalidParameterException", "not a valid JSON file: 'utf-8'"),
        ("trails.yaml", "Trails:\n  - Name: a\n    Name: b\n", "InvalidParameterException",
         "key 'Name' appears twice in one mapping"),
        ("trails.json", '{"Trails": [{"Name": "a", "Name": "b"}]}', "InvalidParameterException",
         "key 'Name' appears twice in one object"),
        ("trails.toml", "Trails = []", "InvalidParameterException", "a trail file's name ends in .json, .yaml or .yml"),
        ("trails.yaml", "- Name: audit\n", "InvalidParameterException", "must be a mapping with the member Trails"),
        ("trails.yaml", "", "InvalidParameterException", "must be a mapping with the member Trails"),
        ("trails.yaml", "Trails: []\nTrial: []\n", "InvalidParameterException", "Trial: unknown member"),
        ("trails.yaml", "Trail: []\n", "InvalidParameterException", "Trail: unknown member (allowed: Trails)"),
        ("trails.yaml", "Trails: {Name: audit}\n", "InvalidParameterException", "Trails: must be a list of trails"),
        ("trails.yaml", "Trails:\n", "InvalidParameterException", "Trails: must be a list of trails"),
        ("trails.yaml", "Trails: [audit]\n", "InvalidParameterException",
         "Trails[0]: must be a mapping of trail members (got 'audit')"),
    ],
)
def test_bad_files(tmp_path: Path, name: str, text: str | bytes, code: str, fragment: str) -> None:
    error = failure(write(tmp_path, name, text))
    assert error.code == code
    assert fragment in error.message, error.message


def dump(tmp_path: Path, *entries: dict[str, Any]) -> Path:
    return write(tmp_path, "trails.yaml", yaml.safe_dump({"Trails": list(entries)}))


@pytest.mark.parametrize(
    ("entries", "code", "where"),
    [
        ([entry(), entry("bad", S3BucketNmae="b")], "InvalidParameterException",
         "Trails[1]: trail 'bad': S3BucketNmae: unknown member (allowed: Name, HomeRegion, AccountId"),
        ([entry(LogFileValidationEnabled=True)], "InvalidParameterException",
         "Trails[0]: trail 'audit': LogFileValidationEnabled: unknown member"),
        ([entry(AdvancedEventSelectors=[{"FieldSelectors": [
            {"Field": "eventCategory", "Equals": ["Data"]},
            {"Field": "resources.type", "Equals": ["AWS::S3::Object"]},
            {"Field": "resources.type", "StartsWith": ["AWS::S3"]}]}])],
         "InvalidEventSelectorsException",
         "Trails[0]: trail 'audit': AdvancedEventSelectors[0].FieldSelectors[2]: operator StartsWith is not allowed "
         "for field resources.type (Equals only)"),
        ([entry(IsLogging="no")], "InvalidParameterException",
         "Trails[0]: trail 'audit': IsLogging: must be a boolean"),
        ([{"HomeRegion": "eu-west-1"}], "InvalidTrailNameException", "Trails[0]: trail (no Name): Name: is required"),
        ([entry(AccountId=111122223333)], "InvalidParameterException", "Trails[0]: trail 'audit': AccountId: must be"),
        ([entry(), entry()], "TrailAlreadyExistsException",
         "Trails[1]: trail 'audit': Name: account 111122223333 already has a trail named 'audit' in eu-west-1"),
        ([entry(f"trail-{i}") for i in range(6)], "MaximumNumberOfTrailsExceededException",
         "Trails[5]: trail 'trail-5': HomeRegion: account 111122223333 already has 5 trails in eu-west-1"),
    ],
)
def test_bad_trails_name_the_file_entry_and_member(tmp_path: Path, entries: list[dict[str, Any]], code: str,
                                                    where: str) -> None:
    path = dump(tmp_path, *entries)
    error = failure(path)
    assert error.code == code
    assert error.message.startswith(f"{path}: {where}"), error.message


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    error = failure(tmp_path / "absent.yaml")
    assert error.message == f"{tmp_path / 'absent.yaml'}: cannot be read (No such file or directory)"
