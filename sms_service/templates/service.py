"""Message templates: immutable numbered versions in the shared storage, and rendering for a send.

Knows nothing of Flask. A version's content (body, description, provider ids) is stored
as one canonical JSON string, so "the same content again" is a string comparison the
storage makes atomically. Rendered bodies and personalisation values never leave this
module except as the text handed to the provider: nothing here logs or stores them.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from marshmallow import ValidationError

from sms_service.exceptions import PersonalisationInvalid, TemplateNotFound
from sms_service.schemas import validate_body
from sms_service.segments import count_segments
from sms_service.storage import Storage
from sms_service.suppression.service import iso_time
from sms_service.templates import placeholders
from sms_service.templates.placeholders import PlaceholderError

log = logging.getLogger(__name__)

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
_NAME = re.compile(NAME_PATTERN)
# providerIds: an entry-point name -> an object of strings, passed to that provider only.
PROVIDER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_PROVIDER = re.compile(PROVIDER_PATTERN)
MAX_PROVIDERS = 8
MAX_IDS = 8
MAX_ID_NAME = 64
MAX_ID_VALUE = 256
MAX_DESCRIPTION = 500
MAX_VERSION = 2**31 - 1  # what every storage holds as an integer


def valid_name(name: str) -> bool:
    """Tell whether `name` is a template name: ``[a-z0-9][a-z0-9_-]{0,63}``."""
    return bool(_NAME.fullmatch(name))


@dataclass(frozen=True)
class Version:
    """One immutable version of a template, as stored."""

    name: str
    version: int
    body: str
    description: str | None
    provider_ids: dict[str, dict[str, str]]
    created: int  # Unix milliseconds
    archived: bool = False
    parts: tuple[placeholders.Part, ...] = field(default=(), compare=False, repr=False)

    def public(self) -> dict[str, Any]:
        """The version as the API answers it."""
        return {"name": self.name, "version": self.version, "body": self.body,
                "description": self.description, "providerIds": self.provider_ids,
                "placeholders": placeholders.placeholders(self.parts), "createdAt": iso_time(self.created),
                "archived": self.archived}


@dataclass(frozen=True)
class Rendered:
    """A template rendered for one message: the text, which version, and each provider's ids."""

    body: str
    name: str
    version: int
    provider_ids: Mapping[str, Mapping[str, str]]

    def __repr__(self) -> str:  # the text may hold a one-time code: never in a repr
        return f"Rendered(name={self.name!r}, version={self.version}, body=<{len(self.body)} chars>)"


def check_content(body: Any, description: Any, provider_ids: Any) -> str:
    """Validate a version's content and return its canonical JSON string.

    Raises `ValueError` naming the field and the problem.
    """
    if not isinstance(body, str):
        raise ValueError("body: must be a string")
    try:
        validate_body(body)
    except ValidationError as exc:
        raise ValueError(f"body: {_first(exc)}") from None
    try:
        placeholders.parse(body)
    except PlaceholderError as exc:
        raise ValueError(f"body: {exc}") from None
    if description is not None and (not isinstance(description, str) or len(description) > MAX_DESCRIPTION
                                    or not description.isprintable()):
        raise ValueError(f"description: must be one line of at most {MAX_DESCRIPTION} printable characters")
    ids = {} if provider_ids is None else provider_ids
    if not isinstance(ids, dict) or len(ids) > MAX_PROVIDERS:
        raise ValueError(f"providerIds: must be an object of at most {MAX_PROVIDERS} providers")
    for provider, values in ids.items():
        if not _PROVIDER.fullmatch(provider):
            raise ValueError("providerIds: a key is not a provider's entry-point name")
        if not isinstance(values, dict) or len(values) > MAX_IDS:
            raise ValueError(f"providerIds.{provider}: must be an object of at most {MAX_IDS} strings")
        for id_name, value in values.items():
            if not 1 <= len(id_name) <= MAX_ID_NAME or not id_name.isprintable():
                raise ValueError(f"providerIds.{provider}: an id name must be 1 to {MAX_ID_NAME} characters")
            if not isinstance(value, str) or not 1 <= len(value) <= MAX_ID_VALUE or not value.isprintable():
                raise ValueError(f"providerIds.{provider}.{id_name}: must be a string of 1 to {MAX_ID_VALUE} "
                                 "printable characters")
    return canonical(body, description, ids)


def canonical(body: str, description: str | None, provider_ids: dict[str, dict[str, str]]) -> str:
    """The one string a version's content is stored (and compared) as."""
    return json.dumps({"body": body, "description": description, "providerIds": provider_ids},
                      sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def version_from(name: str, number: int, content: str, created: int, archived: bool) -> Version:
    """A stored version back as a `Version`. Raises `ValueError` for content that is not one."""
    data = json.loads(content)
    return Version(name, int(number), data["body"], data.get("description"), data.get("providerIds") or {},
                   int(created), bool(archived), placeholders.parse(data["body"]))


class Templates:
    """The deployment's templates, in the shared storage."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def put(self, name: str, body: Any, description: Any = None,
            provider_ids: Any = None) -> tuple[Version, bool]:
        """Store a new version unless the latest live one has this very content.

        Returns the version stored or kept, and whether it is new. Raises `ValueError`
        for bad content and `StorageUnavailable`.
        """
        content = check_content(body, description, provider_ids)
        number, created = self.storage.guarded(lambda: self.storage.template_put(name, content))
        if created:
            log.info("template version stored", extra={"template": name, "template_version": number})
        found = self.version(name, number)
        if found is None:  # pragma: no cover  (versions are never removed)
            raise TemplateNotFound(f"template {name} version {number} vanished")
        return found, created

    def version(self, name: str, number: int | None = None) -> Version | None:
        """Version `number` (None: the latest) of `name`, archived or not; None when there is none.

        Raises `StorageUnavailable`.
        """
        if number is not None and not 1 <= number <= MAX_VERSION:
            return None
        found = self.storage.guarded(lambda: self.storage.template_version(name, number))
        if found is None:
            return None
        number, content, created, archived = found
        return version_from(name, number, content, created, archived)

    def history(self, name: str) -> tuple[Version, list[dict[str, Any]]] | None:
        """The latest version of `name` and the list of its versions ``{version, createdAt}``; or None.

        Raises `StorageUnavailable`.
        """
        found = self.storage.guarded(lambda: self.storage.template_versions(name))
        if not found:
            return None
        archived, versions = found
        number, content, created = versions[-1]
        latest = version_from(name, number, content, created, archived)
        return latest, [{"version": n, "createdAt": iso_time(at)} for n, _, at in versions]

    def archive(self, name: str) -> bool:
        """Archive `name`: sends with it get 404 until a later PUT. Tells whether it was live.

        Raises `StorageUnavailable`.
        """
        archived = self.storage.guarded(lambda: self.storage.template_archive(name))
        if archived:
            log.info("template archived", extra={"template": name})
        return archived

    def summaries(self) -> list[Version]:
        """The latest version of every template, archived ones included, by name.

        A name in the index without a template (a PUT that failed half way) is skipped.
        Raises `StorageUnavailable`.
        """
        names = self.storage.guarded(self.storage.template_names)
        found = (self.version(name) for name in sorted(set(names)))
        return [version for version in found if version is not None]

    def live(self, name: Any, number: Any = None) -> Version:
        """The version a send may use: `number` (None: the latest) of a template that is not archived.

        Raises `TemplateNotFound` (unknown or archived template, unknown version) and
        `StorageUnavailable`.
        """
        if not isinstance(name, str) or not valid_name(name):
            raise TemplateNotFound("template: no such template")
        found = self.version(name, number)
        if found is not None and not found.archived:
            return found
        if found is not None:
            raise TemplateNotFound(f"template: {name} is archived")
        if number is not None and self.version(name) is not None:
            raise TemplateNotFound(f"templateVersion: {name} has no version {number}")
        raise TemplateNotFound(f"template: no template named {name}")

    def render(self, name: Any, personalisation: Mapping[str, Any], number: Any = None) -> Rendered:
        """Render a live template for a send: the text, and the version and ids it came from.

        The text obeys every rule of a `body` (SPEC section 2). Raises `TemplateNotFound`,
        `PersonalisationInvalid` (naming keys, never values) and `StorageUnavailable`.
        """
        version = self.live(name, number)
        return Rendered(render_version(version, personalisation), version.name, version.version,
                        version.provider_ids)

    def preview(self, name: Any, personalisation: Mapping[str, Any],
                number: Any = None) -> dict[str, str | int]:
        """What a send with this personalisation would carry: ``{body, numSegments, encoding, version}``.

        Raises as `render`.
        """
        rendered = self.render(name, personalisation, number)
        segments = count_segments(rendered.body)
        return {"body": rendered.body, "numSegments": str(segments.count), "encoding": segments.encoding,
                "version": rendered.version}


def render_version(version: Version, personalisation: Mapping[str, Any]) -> str:
    """Render one version. Raises `PersonalisationInvalid` naming the problem, never a value."""
    try:
        text = placeholders.render(version.parts, personalisation)
    except PlaceholderError as exc:
        raise PersonalisationInvalid(f"personalisation: {exc}") from None
    try:
        validate_body(text)
    except ValidationError as exc:  # the body rules, in their own words
        raise PersonalisationInvalid(
            f"personalisation: the rendered body breaks a body rule: {_first(exc)}") from None
    return text


def _first(exc: ValidationError) -> str:
    messages = exc.messages
    return str(messages[0] if isinstance(messages, list) and messages else messages)
