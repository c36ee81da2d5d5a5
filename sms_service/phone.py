"""Phone numbers: strict E.164 checks, country and type look-ups, masking for logs."""

from __future__ import annotations

import functools
import re

import phonenumbers
from phonenumbers import PhoneNumberType

# ASCII digits only: \d and str.isdigit() also take full-width, Arabic-Indic and other
# Unicode digits, which phonenumbers would read as the same number under another spelling.
E164 = re.compile(r"\+[1-9][0-9]{1,14}", re.ASCII)
SHORT_CODE = re.compile(r"[0-9]{3,8}", re.ASCII)
ALPHANUMERIC_ID = re.compile(r"(?=[A-Za-z0-9 ]*[A-Za-z])[A-Za-z0-9 ]{1,11}", re.ASCII)

# phonenumbers names every type; operators write them as in its PhoneNumberType.
NUMBER_TYPES = {
    name: value for name, value in vars(PhoneNumberType).items()
    if name.isupper() and isinstance(value, int)
}
_TYPE_NAMES = {value: name for name, value in NUMBER_TYPES.items()}

# Calling codes of no country (SPEC section 21): universal freephone and shared cost (800,
# 808), Inmarsat (870), universal personal (878), satellite (881), international networks
# (882, 883), humanitarian (888) and international premium rate (979). Few legitimate
# receivers, classic targets of international revenue share fraud.
NON_GEOGRAPHIC_CODES = frozenset({800, 808, 870, 878, 881, 882, 883, 888, 979})


# Codes people write for a country that ISO 3166 spells otherwise.
_REGION_ALIASES = {"UK": "GB", "EL": "GR"}


def region_problem(code: str) -> str | None:
    """Why `code` is not an ISO 3166 alpha-2 code that phone numbers belong to, or None when it is.

    The reason is one clause, with the code meant when it is a known slip (``UK``: ``GB``).
    """
    if code in phonenumbers.SUPPORTED_REGIONS:
        return None
    reason = f"{code!r} is not an ISO 3166 alpha-2 country code that phone numbers belong to"
    meant = _REGION_ALIASES.get(code)
    return f"{reason}: did you mean {meant}?" if meant else reason


def is_e164(text: str) -> bool:
    """Tell whether `text` is strictly ``+`` and 2 to 15 digits, no leading zero."""
    return E164.fullmatch(text) is not None


@functools.lru_cache(maxsize=4096)
def parse(number: str) -> phonenumbers.PhoneNumber | None:
    """Parse an E.164 string; None when phonenumbers cannot read it.

    Cached: one request asks about the same number several times (possible, country,
    type, mask), and callers never mutate the result.
    """
    try:
        return phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return None


def canonical(number: str) -> str:
    """The E.164 form phonenumbers gives `number`; `number` itself when it cannot be read.

    Keys that stand for "this receiver" use it, so that two spellings of one number
    count as one.
    """
    parsed = parse(number)
    if parsed is None:
        return number
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def is_possible(number: str) -> bool:
    """Tell whether a strict E.164 string is a possible number for its country."""
    parsed = parse(number)
    return parsed is not None and phonenumbers.is_possible_number(parsed)


@functools.lru_cache(maxsize=4096)
def region_of(number: str) -> str | None:
    """ISO 3166 alpha-2 region of a number (``US``), None when unknown.

    Cached as `parse` is: a send with budgets or ALLOWED_COUNTRIES asks it in the guards
    and again for the message record, and each look-up walks the regions of the calling
    code (+1: some twenty-five) matching the number against each.

    A number whose exact region is unknown (an unassigned range such as +1 555) gets the
    main region of its calling code, so ALLOWED_COUNTRIES still decides about it.
    """
    parsed = parse(number)
    if parsed is None:
        return None
    region = phonenumbers.region_code_for_number(parsed)
    if region in (None, "ZZ", "001"):
        region = phonenumbers.region_code_for_country_code(parsed.country_code)
    return None if region in (None, "ZZ", "001") else region


def type_of(number: str) -> str:
    """phonenumbers type name of a number (``MOBILE``, ``PREMIUM_RATE``, ``UNKNOWN``...)."""
    parsed = parse(number)
    if parsed is None:
        return "UNKNOWN"
    return _TYPE_NAMES.get(phonenumbers.number_type(parsed), "UNKNOWN")


def country_calling_code(number: str) -> int | None:
    """Calling code of a number (``1`` for ``+1...``), None when unknown."""
    parsed = parse(number)
    return parsed.country_code if parsed is not None else None


def international_network_code(number: str) -> int | None:
    """The calling code of a number of no country (``881`` for ``+8816...``), else None."""
    code = country_calling_code(number)
    return code if code in NON_GEOGRAPHIC_CODES else None


def mask_number(number: str) -> str:
    """Mask a number for logs: country code and last two digits only (``+44***89``)."""
    if not is_e164(number):
        return "***"
    code = country_calling_code(number)
    return f"+{code}***{number[-2:]}" if code else f"+***{number[-2:]}"
