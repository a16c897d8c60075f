"""Chinese licence plates (GA 36): normalise what a camera read, say what kind of plate it
is, and match a read against the registered plates forgiving at most one OCR confusion.

Pure functions; no I/O. The confusion table and the province list are data below.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# The 31 provincial-level abbreviations that open an ordinary plate.
PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"

# Characters plate OCR mixes up; a read may differ from a registered plate by one of
# these swaps and still match (if policy lets it open for that vehicle's class).
CONFUSABLE_GROUPS: tuple[str, ...] = ("0ODQ", "1IL", "2Z", "5S", "6G", "8B")
_CONFUSED: dict[str, str] = {c: g.replace(c, "") for g in CONFUSABLE_GROUPS for c in g}

# What cameras send when they saw a vehicle but no plate.
NO_PLATE_READS = frozenset({"", "无牌", "无牌车", "无车牌", "未识别", "_无_", "车牌", "NONE"})

# Dots, dashes and separators that cameras and people put inside a plate.
_SEPARATORS = dict.fromkeys(map(ord, " \t\r\n.·•・。-\u2010\u2011\u2013\u2014_/\\"), None)

_P = f"[{PROVINCES}]"
_AUTH = "[A-HJ-NP-Z]"  # the issuing authority's letter (never I or O)
_SER = "[A-HJ-NP-Z0-9]"  # serial characters: no I or O either
_SMALL_ENERGY = "[DABCEFGHJK]"  # D, A-C, E battery; F-K other energy (since 2021)
_MILITARY = "[VKHBSLJNGCEZ]"


class PlateKind(enum.StrEnum):
    ORDINARY = "ordinary"
    NEW_ENERGY_SMALL = "new_energy_small"
    NEW_ENERGY_LARGE = "new_energy_large"
    TRAILER = "trailer"
    LEARNER = "learner"
    POLICE = "police"
    HONG_KONG = "hong_kong"
    MACAU = "macau"
    EMBASSY = "embassy"
    CONSULATE = "consulate"
    MILITARY = "military"
    ARMED_POLICE = "armed_police"
    EMERGENCY = "emergency"
    NO_PLATE = "no_plate"
    INVALID = "invalid"


# Order matters: the first pattern that matches the whole plate names its kind.
_PATTERNS: tuple[tuple[PlateKind, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern))
    for kind, pattern in (
        (PlateKind.HONG_KONG, f"粤Z{_SER}{{4}}港"),
        (PlateKind.MACAU, f"粤Z{_SER}{{4}}澳"),
        (PlateKind.NEW_ENERGY_SMALL, f"{_P}{_AUTH}{_SMALL_ENERGY}[A-HJ-NP-Z0-9][0-9]{{4}}"),
        (PlateKind.NEW_ENERGY_LARGE, f"{_P}{_AUTH}[0-9]{{5}}[DABCEFGHJK]"),
        (PlateKind.ORDINARY, f"{_P}{_AUTH}{_SER}{{5}}"),
        (PlateKind.TRAILER, f"{_P}{_AUTH}{_SER}{{4}}挂"),
        (PlateKind.LEARNER, f"{_P}{_AUTH}{_SER}{{4}}学"),
        (PlateKind.POLICE, f"{_P}{_AUTH}{_SER}{{4}}警"),
        (PlateKind.CONSULATE, f"{_P}{_AUTH}{_SER}{{4}}领"),
        (PlateKind.EMERGENCY, f"{_P}{_AUTH}{_SER}{{4}}应急"),
        (PlateKind.EMBASSY, "使[0-9]{6}|[0-9]{6}使"),
        (PlateKind.ARMED_POLICE, f"WJ{_P}?[0-9]{{4}}[0-9A-Z]"),
        (PlateKind.MILITARY, f"{_MILITARY}[A-Z][0-9]{{5}}"),
    )
)


def normalise(text: str) -> str:
    """Full-width to half-width (NFKC), no spaces, dots or dashes, upper case.

    Repeated until nothing changes (at most a few rounds): taking a separator out can
    leave characters that NFKC joins anew (a spacing accent is a space and a combining
    mark), so one round is not always the last."""
    plain = text
    for _ in range(4):
        again = unicodedata.normalize("NFKC", plain).translate(_SEPARATORS).upper()
        if again == plain:
            break
        plain = again
    return plain


def classify(plate: str) -> PlateKind:
    """The GA 36 kind of a normalised plate; `INVALID` when it is none of them."""
    if plate in NO_PLATE_READS:
        return PlateKind.NO_PLATE
    for kind, pattern in _PATTERNS:
        if pattern.fullmatch(plate):
            return kind
    return PlateKind.INVALID


def is_valid(plate: str) -> bool:
    """A normalised plate that a vehicle can carry (no plate and nonsense are not)."""
    return classify(plate) not in (PlateKind.NO_PLATE, PlateKind.INVALID)


class PlateError(ValueError):
    """A plate that cannot be registered: what it is and why."""


def parse(text: str) -> tuple[str, PlateKind]:
    """A plate as typed or read, normalised and validated; raises PlateError."""
    plate = normalise(text)
    kind = classify(plate)
    if kind is PlateKind.NO_PLATE:
        raise PlateError(f"{text!r} is no plate")
    if kind is PlateKind.INVALID:
        raise PlateError(f"{text!r} is not a valid plate (GA 36)")
    return plate, kind


class MatchKind(enum.StrEnum):
    EXACT = "exact"
    FUZZY = "fuzzy"  # one confusable swap (or a low-confidence province) away
    AMBIGUOUS = "ambiguous"  # one swap away from two or more registered plates
    NONE = "none"


@dataclass(frozen=True, slots=True)
class PlateMatch:
    kind: MatchKind
    read: str  # the normalised read
    plate: str | None = None  # the registered plate it matched
    position: int | None = None  # the character forgiven (fuzzy only)
    candidates: tuple[str, ...] = ()  # the registered plates an ambiguous read is near

    @property
    def found(self) -> bool:
        return self.plate is not None


def _province_positions(read: str) -> list[int]:
    return [i for i, c in enumerate(read) if c in PROVINCES]


def variants(read: str, *, province_low_confidence: bool = False) -> Iterable[tuple[str, int]]:
    """Every plate one forgivable edit away from `read`, with the position edited: one
    confusable swap on a non-province character, or, when the camera marks its province
    character low-confidence, another province there."""
    for i, c in enumerate(read):
        for other in _CONFUSED.get(c, ""):
            yield read[:i] + other + read[i + 1:], i
    if province_low_confidence:
        for i in _province_positions(read):
            for other in PROVINCES:
                if other != read[i]:
                    yield read[:i] + other + read[i + 1:], i


def match(
    read: str, registered: Mapping[str, object] | frozenset[str] | set[str], *,
    province_low_confidence: bool = False,
) -> PlateMatch:
    """Match a camera's read against the registered plates (normalised keys)."""
    plate = normalise(read)
    if plate in registered:
        return PlateMatch(MatchKind.EXACT, plate, plate)
    if classify(plate) is PlateKind.NO_PLATE:
        return PlateMatch(MatchKind.NONE, plate)
    near: dict[str, int] = {}
    for candidate, position in variants(plate, province_low_confidence=province_low_confidence):
        if candidate in registered:
            near.setdefault(candidate, position)
    if not near:
        return PlateMatch(MatchKind.NONE, plate)
    if len(near) > 1:
        return PlateMatch(MatchKind.AMBIGUOUS, plate, candidates=tuple(sorted(near)))
    (found, position), = near.items()
    return PlateMatch(MatchKind.FUZZY, plate, found, position)


def confusable(a: str, b: str) -> bool:
    """Whether OCR could mistake character `a` for `b` (or they are the same)."""
    return a == b or b in _CONFUSED.get(a, "")
