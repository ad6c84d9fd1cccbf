"""The built-in personal-data and secret detectors: a regular expression that finds candidates, and a check that
keeps only real ones (Luhn for cards, mod-97 for IBANs, an address parser for IPs, an entropy test for tokens),
so that order numbers, timestamps and UUIDs are left alone."""

import ipaddress
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

# Card numbers by issuer prefix and length (Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay): an epoch
# timestamp in milliseconds starts with 1 and is never taken for one.
_CARD_PREFIX = re.compile(r"4|5[1-5]|2[2-7]|3[47]|6011|64[4-9]|65|35|3[068]|62")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_SECRET_TOKEN_MIN, _SECRET_TOKEN_MAX, _SECRET_ENTROPY = 24, 256, 4.0
_KEY_PREFIXES = ("sk-", "AKIA", "ASIA", "ABIA", "ACCA", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "xox", "AIza", "tk_")
_SECRET_NAMES = ("api_key", "api-key", "apikey", "secret", "access_token", "access-token", "accesstoken",
                 "auth_token", "auth-token", "authtoken", "password", "passwd")


_NUMBER_RUN = re.compile(r"\d[\d \-.()]{6,}\d")
_IBAN_START = re.compile(r"[A-Z]{2}\d\d")
_IPV4_SHAPE = re.compile(r"\d\.\d{1,3}\.\d{1,3}\.\d")


class Shape:
    """What a text holds that detectors ask about, each found once and only when asked."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._longest_number: int | None = None
        self._digits: int | None = None

    def holds_any(self, needles: tuple[str, ...], *, ignore_case: bool = False) -> bool:
        haystack = self.text.lower() if ignore_case else self.text
        return any(map(haystack.__contains__, needles))

    @property
    def digits(self) -> int:
        if self._digits is None:
            self._digits = sum(map(self.text.count, "0123456789"))
        return self._digits

    @property
    def longest_number(self) -> int:
        """The digits in the longest run of digits and separators (a card or phone number needs 8 or more)."""
        if self.digits < 8:
            return self.digits
        if self._longest_number is None:
            self._longest_number = max((len(_digits(run)) for run in _NUMBER_RUN.findall(self.text)), default=0)
        return self._longest_number


@dataclass(frozen=True, slots=True)
class Detector:
    name: str  # what `--detect` and the settings call it
    label: str  # what a masked value becomes: [LABEL]
    pattern: re.Pattern[str]
    accept: Callable[[str], bool] = lambda found: True
    group: int = 0  # the part of the match that is the value (a key's value after `api_key=`)
    normal: Callable[[str], str] = lambda found: found  # the form that is hashed: one token per value
    # Whether the text can hold one at all, from what is cheap to find: `in` runs at C speed, and a pattern that
    # starts with a look-behind scans every position in Python's engine, several times slower.
    could_hold: Callable[["Shape"], bool] = lambda shape: True


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def _is_card(found: str) -> bool:
    digits = _digits(found)
    return 13 <= len(digits) <= 19 and _CARD_PREFIX.match(digits) is not None and luhn_valid(digits)


def iban_valid(text: str) -> bool:
    compact = text.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


def _is_phone(found: str) -> bool:
    digits = len(_digits(found))
    if found.startswith("+"):
        return 8 <= digits <= 15
    separators = len(re.findall(r"[ .\-]", found))
    return 9 <= digits <= 12 and ("(" in found or separators >= 2)


def _is_ip(found: str) -> bool:
    try:
        ipaddress.ip_address(found)
    except ValueError:
        return False
    return True


def entropy(text: str) -> float:
    """Shannon entropy in bits per character."""
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def _is_random_token(found: str) -> bool:
    """A long run that mixes upper case, lower case and digits the way generated keys do, and words do not."""
    return (any(c.isupper() for c in found) and any(c.islower() for c in found)
            and sum(c.isdigit() for c in found) >= 2 and _UUID.fullmatch(found) is None
            and entropy(found) >= _SECRET_ENTROPY)


DETECTORS: tuple[Detector, ...] = (
    Detector("email", "EMAIL",
             re.compile(r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
             normal=str.lower, could_hold=lambda shape: "@" in shape.text),
    Detector("secret", "SECRET", re.compile(
        r"\b(?:sk-(?:ant-|proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}|(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}"
        r"|gh[pousr]_[A-Za-z0-9]{36,}|xox[abprs]-[A-Za-z0-9\-]{10,}|AIza[0-9A-Za-z_\-]{35}|tk_[A-Za-z0-9_\-]{20,})"),
        could_hold=lambda shape: shape.holds_any(_KEY_PREFIXES)),
    Detector("secret", "SECRET", re.compile(
        r"(?i)(?<![a-z])(?:api[_-]?key|secret(?:[_-]?access)?(?:[_-]?key)?|(?:access|auth)[_-]?token|password|passwd)"
        r"\s*[\"']?\s*[:=]\s*[\"']?([^\s\"',;]{8,})"), group=1,
        could_hold=lambda shape: shape.holds_any(_SECRET_NAMES, ignore_case=True)),
    Detector("secret", "SECRET", re.compile(
        rf"(?<![A-Za-z0-9_+=\-])[A-Za-z0-9_+=\-]{{{_SECRET_TOKEN_MIN},{_SECRET_TOKEN_MAX}}}(?![A-Za-z0-9_+=\-])"),
        accept=_is_random_token,
        could_hold=lambda shape: max(map(len, shape.text.split()), default=0) >= _SECRET_TOKEN_MIN),
    Detector("card", "CARD", re.compile(r"(?<![\w\-.])(?:\d[ \-]?){12,18}\d(?![\w\-]|\.\d)"), accept=_is_card,
             normal=_digits, could_hold=lambda shape: shape.longest_number >= 13),
    Detector("iban", "IBAN", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b"),
             normal=lambda found: found.replace(" ", "").upper(),
             could_hold=lambda shape: shape.digits >= 10 and _IBAN_START.search(shape.text) is not None),
    Detector("ip", "IP", re.compile(
        r"(?<![\w.:])(?:(?:\d{1,3}\.){3}\d{1,3}|(?=[0-9A-Fa-f:]*\d)[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7})"
        r"(?![\w:]|\.\d)"), accept=_is_ip, normal=lambda found: str(ipaddress.ip_address(found)),
        could_hold=lambda shape: shape.text.count(":") >= 2
        or (shape.digits >= 4 and shape.text.count(".") >= 3 and _IPV4_SHAPE.search(shape.text) is not None)),
    Detector("phone", "PHONE", re.compile(
        r"(?<![\w+\-/.])(?:\+\d{1,3}[ .\-]?)?(?:\(\d{1,4}\)[ .\-]?)?\d{1,4}(?:[ .\-]\d{1,8}){1,5}(?![\w:/]|[.\-]\d)"),
        accept=_is_phone, normal=_digits, could_hold=lambda shape: shape.longest_number >= 8),
)
NAMES: tuple[str, ...] = tuple(dict.fromkeys(detector.name for detector in DETECTORS))


@dataclass(frozen=True, slots=True)
class Finding:
    start: int
    end: int
    label: str
    value: str  # normalised, for hashing


def find(text: str, detectors: tuple[Detector, ...]) -> Iterator[Finding]:
    """The detected values in `text`, in order, never overlapping (an earlier detector wins a tie)."""
    taken: list[Finding] = []
    shape = Shape(text)
    for detector in detectors:
        if not detector.could_hold(shape):
            continue
        for match in detector.pattern.finditer(text):
            start = match.start(detector.group)
            length = _accepted_length(detector, match.group(detector.group))
            if not length or _overlaps(taken, start, start + length):
                continue
            value = text[start:start + length]
            taken.append(Finding(start, start + length, detector.label, detector.normal(value)))
    return iter(sorted(taken, key=lambda finding: finding.start))


def _accepted_length(detector: Detector, value: str) -> int:
    """How much of the candidate is a real value; 0: none. An IBAN's pattern may run on into the capitals of the
    next word (`… 3000 AND`): its longest valid prefix is the IBAN."""
    if detector.name != "iban":
        return len(value) if detector.accept(value) else 0
    for end in range(len(value), 14, -1):
        if value[end - 1] != " " and (end == len(value) or value[end] == " ") and iban_valid(value[:end]):
            return end
    return 0


def _overlaps(taken: list[Finding], start: int, end: int) -> bool:
    return any(start < other.end and other.start < end for other in taken)
