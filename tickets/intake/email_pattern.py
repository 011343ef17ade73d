"""Django's EmailValidator as an ECMA-262 pattern for the published schema
(`tickets.intake.contract`), its character classes read off the validator's own regexes."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

from django.core.validators import EmailValidator
from django.utils.ipv6 import MAX_IPV6_ADDRESS_LENGTH


def escaped_class(chars: set[str]) -> str:
    """The inside of a regex character class holding exactly `chars` (BMP only), as
    `\\uXXXX` ranges: the spelling ECMA-262 and Python read alike."""
    codes = sorted(ord(char) for char in chars)
    ranges: list[tuple[int, int]] = []
    for code in codes:
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1] = (ranges[-1][0], code)
        else:
            ranges.append((code, code))
    return "".join(
        f"\\u{start:04X}" if start == end else f"\\u{start:04X}-\\u{end:04X}"
        for start, end in ranges
    )


def _chars_where(test: Callable[[str], object]) -> str:
    """A character class of the BMP's characters (lone surrogates aside, see
    _refused_class_body) for which `test(char)` holds."""
    return escaped_class(
        {chr(code) for code in range(0x10000) if not 0xD800 <= code <= 0xDFFF and test(chr(code))}
    )


def _ipv4_pattern() -> str:
    # ipaddress.IPv4Address: four decimal octets, 0-255, no leading zero.
    octet = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
    return rf"{octet}(?:\.{octet}){{3}}"


def _ipv6_pattern() -> str:
    """ipaddress.IPv6Address's forms without a scope: eight groups of 1-4 hex digits, the
    last two of which may be an IPv4 address, and at most one `::` standing for one group or
    more; at most MAX_IPV6_ADDRESS_LENGTH characters, as Django's is_valid_ipv6_address."""
    group = "[0-9A-Fa-f]{1,4}"
    ipv4 = _ipv4_pattern()

    def groups(count: int) -> str:
        # Up to `count` groups (none included), the last pair of which may be an IPv4.
        if count <= 0:
            return ""
        plain = f"{group}(?::{group}){{0,{count - 1}}}"
        if count < 2:
            return f"(?:{plain})?"
        with_ipv4 = f"(?:{group}:){{0,{count - 2}}}{ipv4}"
        return f"(?:{with_ipv4}|{plain})?"

    full = f"(?:{group}:){{6}}(?:{group}:{group}|{ipv4})"
    compressed = [
        (f"(?:{group}:){{{left - 1}}}{group}" if left else "") + "::" + groups(7 - left)
        for left in range(8)
    ]
    alternatives = "|".join([full, *compressed])
    return f"(?=[0-9A-Fa-f:.]{{1,{MAX_IPV6_ADDRESS_LENGTH}}}\\])(?:{alternatives})"


@functools.cache
def email_pattern() -> str:
    """Django's EmailValidator (the one DRF's EmailField runs) as an ECMA-262 pattern.

    The character classes are read off the validator's own compiled regular expressions,
    character by character, so they follow Django's rules whatever its version says (and its
    IGNORECASE, which also takes the long s U+017F, the dotless i U+0131 and the Kelvin sign
    U+212A for ASCII letters). The structure around them is the validator's, written without
    its lookbehinds: a dot-atom or quoted local part; then `localhost`, a domain of labels
    and a top-level label of letters (or `xn--` punycode), or an IP literal that ipaddress
    accepts. The field trims whitespace at the ends before the validator sees it, so the
    pattern allows it there, and the domain's last character is no whitespace (trimming
    would take it off).
    """
    validator = EmailValidator()
    user = validator.user_regex
    domain = validator.domain_regex

    atext = _chars_where(lambda c: user.match(c))
    qtext = _chars_where(lambda c: c not in '"\\' and user.match(f'"{c}"'))
    quoted_pair = _chars_where(lambda c: user.match(f'"\\{c}"'))
    local = rf'(?:[{atext}]+(?:\.[{atext}]+)*|"(?:[{qtext}]|\\[{quoted_pair}])*")'

    label_char = _chars_where(lambda c: domain.match(f"{c}.com"))
    label = f"[{label_char}](?:[{label_char}-]{{0,61}}[{label_char}])?"
    tld_char = _chars_where(lambda c: c != "-" and domain.match(f"a.a{c}a"))
    tld_last = _chars_where(lambda c: c != "-" and not c.isspace() and domain.match(f"a.a{c}"))
    # After a digit only the punycode alternative can match: its own characters.
    puny_char = _chars_where(lambda c: domain.match(f"a.xn--0{c}"))
    tld = f"(?:[{tld_char}][{tld_char}-]{{0,61}}[{tld_last}]|[xX][nN]--[{puny_char}]{{1,59}})"
    hostname = f"{label}(?:\\.{label})*\\.{tld}"
    allowed = "|".join(re.escape(name) for name in validator.domain_allowlist)
    literal = rf"\[(?:{_ipv4_pattern()}|{_ipv6_pattern()})\]"

    space = _chars_where(str.isspace)
    return f"^[{space}]*{local}@(?:{allowed}|{hostname}|{literal})[{space}]*$"
