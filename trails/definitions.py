"""Trail definition files: the trails kafkatrail runs, declared in JSON or YAML.

Shape (the file's suffix picks the parser: ``.json``, or ``.yaml``/``.yml``)::

    Trails:
      - Name: audit                       # CreateTrail's request members, as AWS names them
        S3BucketName: audit-bucket
        IsMultiRegionTrail: true          # ... S3KeyPrefix, SnsTopicName, EnableLogFileValidation, TagsList, ...
        HomeRegion: eu-west-1             # required: the region the trail was created in
        AccountId: "111122223333"         # required: the account that owns the trail
        OrganizationId: o-a1b2c3d4e5      # organization trails only: the AWSLogs/<orgId>/ folder of their files
        IsLogging: true                   # optional, default true
        EventSelectors: [...]             # or AdvancedEventSelectors (not both); neither = all management events
        InsightSelectors: [...]           # optional, default none

The top level is a mapping with the one member ``Trails``, a list (possibly empty). Members not
given take CreateTrail's defaults (IncludeGlobalServiceEvents true, IsMultiRegionTrail false,
EnableLogFileValidation false, IsOrganizationTrail false, RecursiveLogging true); a null member
counts as absent. ``IsLogging`` defaults to true, unlike CreateTrail: a file declares the trails
that should run, so listing a trail means it logs unless the file says otherwise. A key given twice
in one mapping is an error rather than a silent override. Quote account ids in YAML
(``"011122223333"``): unquoted, YAML reads a number and the trail is refused.

A file holds at most 1 MiB (``MAX_FILE_BYTES``) and nests at most 32 levels (``MAX_DEPTH``; a value inside
k lists and mappings is at level k + 1, and a trail file needs 9); YAML aliases are refused.

A bad file raises one :class:`TrailError` whose message starts with the file and the entry
(``kafkatrail.trails.yaml: Trails[2]: trail 'audit': AdvancedEventSelectors[0]...``); problems with the file
itself (syntax, top-level shape, a key given twice) are ``InvalidParameterException``.

Each trail is checked as :class:`kafkatrail.trails.model.Trail` checks it, then against the trails before it
in the file (names and the 5-trails-per-region limit, :func:`kafkatrail.trails.validation.check_can_add`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

import yaml

from kafkatrail.trails import members
from kafkatrail.trails.errors import TrailError, cut, shown
from kafkatrail.trails.model import Trail, trail_from_members
from kafkatrail.trails.validation import check_can_add

_PARAMETER = "InvalidParameterException"
MAX_FILE_BYTES = 1 << 20  # 5 trails per region and account fit in a few KiB; a larger file is a mistake or an attack
MAX_DEPTH = 32  # levels of nesting (a value inside k lists and mappings is at level k + 1); a trail file has 9


class _TooDeep(ValueError):
    """The file nests more than MAX_DEPTH levels."""


def load_trails(path: str | Path) -> tuple[Trail, ...]:
    """The trails a JSON or YAML trail file declares; a bad file raises one TrailError naming the file and member."""
    path = Path(path)
    parse = _PARSERS.get(path.suffix)
    if parse is None:
        raise TrailError(_PARAMETER, f"{path}: a trail file's name ends in .json, .yaml or .yml")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise TrailError(_PARAMETER, f"{path}: cannot be read ({exc.strerror})") from None
    if size > MAX_FILE_BYTES:
        raise TrailError(_PARAMETER, f"{path}: a trail file holds at most {MAX_FILE_BYTES:,} bytes (got {size:,})")
    try:
        with path.open(encoding="utf-8") as stream:
            document = parse(stream)
        _check_depth(document)
    except (_TooDeep, RecursionError):
        raise TrailError(_PARAMETER, f"{path}: nested too deeply to be a trail file (more than {MAX_DEPTH} "
                         "levels)") from None
    except (ValueError, yaml.YAMLError) as exc:
        raise TrailError(_PARAMETER, f"{path}: not a valid {path.suffix[1:].upper()} file: {str(exc)[:300]}") from None
    try:
        return parse_trails(document)
    except TrailError as exc:
        raise exc.within(str(path)) from None


def parse_trails(document: Any) -> tuple[Trail, ...]:
    """The trails of an already parsed trail file (``{"Trails": [...]}``); raises TrailError."""
    if not isinstance(document, Mapping):
        raise TrailError(_PARAMETER, f"must be a mapping with the member Trails (got {type(document).__name__})")
    unknown = [key for key in document if key != "Trails"]
    if unknown:
        raise TrailError(_PARAMETER, f"{cut(unknown[0])}: unknown member (allowed: Trails)")
    entries = document.get("Trails")
    if not isinstance(entries, list):
        raise TrailError(_PARAMETER, f"Trails: must be a list of trails (got {type(entries).__name__})")
    trails: list[Trail] = []
    for index, entry in enumerate(entries):
        try:
            trail = trail_from_members(entry, members.FILE)
            check_can_add(trails, trail)
        except TrailError as exc:
            raise exc.within(f"Trails[{index}]") from None
        trails.append(trail)
    return tuple(trails)


def _check_depth(document: Any) -> None:
    """Raise _TooDeep when ``document`` nests more than MAX_DEPTH levels (walked without recursion: the
    JSON parser reads up to the interpreter's recursion limit, and copying or validating such a value
    would recurse deeper still)."""
    pending = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise _TooDeep
        if isinstance(value, Mapping):
            pending.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            pending.extend((item, depth + 1) for item in value)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    duplicates = [key for key in dict.fromkeys(keys) if keys.count(key) > 1]
    if duplicates:
        raise ValueError(f"key {shown(duplicates[0])} appears twice in one object")
    return dict(pairs)


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a mapping that gives one key twice (merge keys may still be overridden),
    any alias (`*name`): aliases let a few hundred bytes expand into gigabytes ("billion laughs"), and
    nesting deeper than MAX_DEPTH, as soon as it is read: PyYAML's parser slows down with depth (a few
    KiB of `[` took seconds) and recurses until the interpreter's limit."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.events.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed in a trail file",
                                              self.peek_event().start_mark)
        if self._depth >= MAX_DEPTH:
            raise _TooDeep
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def _unique_mapping(self, node: yaml.MappingNode) -> Iterator[dict[Any, Any]]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {shown(key_node.value)} appears twice in one mapping", key_node.start_mark
                    )
                seen.add(key_node.value)
        yield from self.construct_yaml_map(node)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _UniqueKeyLoader._unique_mapping)

_PARSERS: dict[str, Callable[[TextIO], Any]] = {
    ".json": lambda stream: json.load(stream, object_pairs_hook=_unique_keys),
    ".yaml": lambda stream: yaml.load(stream, Loader=_UniqueKeyLoader),  # a SafeLoader: builds no Python objects
    ".yml": lambda stream: yaml.load(stream, Loader=_UniqueKeyLoader),
}
