"""Humdrum **kern, read in one linear pass: the notes as they sound, per part, in quarter notes.

The Humdrum syntax (Huron, "The Humdrum Toolkit: Reference Manual", 1995; the **kern and spine-path
sections of humdrum.org) read as far as sounding notes need:

- records: `!!`/`!!!` global comments and reference records, `!` local comments, `*` interpretations,
  `=` barlines, and data; tab-separated spines, one field per spine;
- spine paths: `*^` splits a spine in two, `*v` joins adjacent spines, `*x` exchanges two, `*+` adds
  one, `*-` ends one; only `**kern` spines sound (`**dynam`, `**text` ... are kept in step, unread);
- tokens: a chord is space-separated subtokens; a subtoken's duration is its reciprocal (4 a quarter,
  8 an eighth, 6 a triplet quarter, 0 a breve, 00 a long, `3%2` a rational) with dots; its pitch is
  letters (`c` middle C, `cc` an octave up, `C` an octave down) with `#`, `-`, `n`; `r` a rest; `[`,
  `_`, `]` a tie; `q`/`Q` a grace note (no duration: left out, as the MusicXML reader does); a null
  token `.` continues what sounds;
- tandem interpretations: `*MM` quarter notes a minute, `*I` instrument codes and `*I"` names; a
  transposing instrument's `*ITr` (`*ITrd1c2`, a B-flat clarinet) changes no pitch: **kern is
  encoded at concert pitch and `*ITr` is the interval to the written part (the Humdrum Toolkit's
  `trans` manual; humlib's `transpose -W` turns it into `*Tr`); `*Tr` (`*Trd1c2`) marks data
  transposed by that interval from concert pitch, so c semitones are taken off to sound;
- time: each data record starts when the earliest sounding token of any spine ends, as the Humdrum
  Toolkit's `timebase` lays records out.

Why a reader of musicid's own beside partitura and music21: measured on the handed Polish kern
(docs/PERFORMANCE.md, "Score reader"), partitura 1.9 fails on 7.8% of the files (its spine-split
handling) and takes ~14 s on a 1 MB score; music21 reads those but takes up to 280 s on one. This
pass reads every handed file in well under a second a megabyte. Its faults are KernErrors, one line naming the record.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction

from ..errors import ScoreError

# a kern subtoken's parts: optional duration (digits, %, dots), then everything else
_RECIP = re.compile(r"(\d+)(?:%(\d+))?(\.*)")
_PITCH = re.compile(r"([a-gA-G])\1*")
_TRANSPOSED = re.compile(r"^\*Trd[+-]?\d+c([+-]?\d+)$")  # data transposed by c semitones
_STEPS = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}
# Humdrum instrument codes (*I..., the Humdrum Toolkit's instrument table) -> General MIDI program (0-based);
# the codes of the handed Polish scores, most used first (*Iempty: a part whose instrument is not named)
KERN_PROGRAMS = {
    "violn": 40, "piano": 0, "tenor": 52, "organ": 19, "soprn": 52, "bass": 52, "alto": 52, "cor": 60,
    "vox": 52, "viola": 41, "oboe": 68, "clars": 71, "flt": 73, "fagot": 70, "forte": 0, "cello": 42,
    "timpa": 47, "tromp": 56, "clrno": 56, "tromt": 56, "cbass": 43, "picco": 72, "tromb": 57, "canto": 52,
    "viole": 41, "arpa": 46, "troma": 56, "violb": 43, "clarb": 71, "cornt": 56, "corno": 60, "tuba": 58,
    "barit": 52, "mezzo": 52, "calto": 52, "cemba": 6, "clavi": 6, "harp": 46, "guitr": 24, "liuto": 24,
}
MAX_NOTES = 1_000_000  # as score.MAX_NOTES: more than any piece holds, stopped before memory runs out
QUARTERS_OF_RECIP_0 = Fraction(8)  # "0": a breve, two whole notes
QUARTERS_OF_RECIP_00 = Fraction(16)  # "00": a long


class KernError(ScoreError):
    """A **kern file whose spines or tokens cannot be followed."""


class KernTooLarge(KernError):
    """A **kern file with more notes than any piece holds: refused, not handed to another reader."""


@dataclass
class Spine:
    """One spine's state as records go by."""

    kern: bool  # a **kern spine: its tokens sound
    part: int  # the **kern spine of the first record (or *+) it descends from: its channel
    until: Fraction = Fraction(0)  # when what it last started ends, in quarters
    transpose: int = 0  # semitones from the data to concert pitch (*Tr)
    last: Fraction = Fraction(1)  # the last duration given, for a subtoken that gives none


@dataclass
class KernPart:
    """A **kern spine of the first record and every spine split from it."""

    name: str = ""  # from *I" (a name) where given
    program: int | None = None  # from an *I code where given
    notes: list[list[Fraction | int]] = field(default_factory=list)  # [onset, end, pitch]


def duration(subtoken: str) -> Fraction | None:
    """Quarters of a kern subtoken's duration, or None where it gives none."""
    m = _RECIP.search(subtoken)
    if m is None:
        return None
    digits, denominator, dots = m.groups()
    if digits == "0" or digits == "00":
        base = QUARTERS_OF_RECIP_0 if digits == "0" else QUARTERS_OF_RECIP_00
    else:
        if int(digits) == 0 or (denominator and int(denominator) == 0):
            return None  # "1%0": no duration
        recip = Fraction(int(digits), int(denominator)) if denominator else Fraction(int(digits))
        base = Fraction(4) / recip
    return base * (2 - Fraction(1, 2 ** len(dots)))


def pitch(subtoken: str) -> int | None:
    """MIDI pitch of a kern subtoken (`c` = 60, `cc` = 72, `C` = 48), or None for a rest or none."""
    if "r" in subtoken:
        return None
    m = _PITCH.search(subtoken)
    if m is None:
        return None
    letters = m.group(0)
    step = _STEPS[letters[0].lower()]
    octave = 3 + len(letters) if letters[0].islower() else 4 - len(letters)
    accidentals = subtoken.count("#") - subtoken.count("-")
    return 12 * (octave + 1) + step + accidentals


def _split_fields(line: str, width: int, number: int) -> list[str]:
    fields = line.split("\t")
    while len(fields) > width and not fields[-1].strip():
        fields.pop()  # trailing tabs
    if len(fields) != width:
        raise KernError(f"line {number} has {len(fields)} fields where {width} spines are open")
    return fields


def read_kern(text: str) -> tuple[list[KernPart], list[tuple[Fraction, int]]]:
    """Parts (their notes as [onset, end, sounding pitch] in quarters) and tempo marks (quarter,
    microseconds a quarter) of **kern text. Raises KernError (its message names the line, not the
    file: the caller does) for spines that cannot be followed."""
    spines: list[Spine] | None = None
    parts: list[KernPart] = []
    tempos: list[tuple[Fraction, int]] = []
    ties: dict[tuple[int, int], list[Fraction | int]] = {}  # (part, pitch) -> the note a tie extends
    now = Fraction(0)
    count = 0
    for number, raw in enumerate(text.removeprefix("\ufeff").splitlines(), 1):
        line = raw.rstrip("\r")
        if not line or line.startswith("!!"):
            continue
        if spines is None:
            if line.startswith("**"):
                spines = []
                for f in line.split("\t"):
                    kern = f.startswith("**kern")
                    spines.append(Spine(kern, len(parts) if kern else -1))
                    if kern:
                        parts.append(KernPart())
            elif not line.startswith("!"):
                raise KernError(f"line {number} comes before any exclusive interpretation (**kern)")
            continue
        if not spines:
            break  # every spine ended
        if line.startswith("!") or line.startswith("="):
            continue
        fields = _split_fields(line, len(spines), number)
        if line.startswith("*"):
            spines = _interpret(fields, spines, parts, tempos, now)
            continue
        for spine, token in zip(spines, fields, strict=True):
            if not spine.kern or token == "." or not token or token.startswith("*"):
                continue
            shortest: Fraction | None = None
            for sub in token.split(" "):
                if "q" in sub or "Q" in sub:
                    continue  # a grace note: no duration, left out
                length = duration(sub)
                if length is None:
                    length = shortest if shortest is not None else spine.last
                shortest = length if shortest is None else min(shortest, length)
                spine.last = length
                key = pitch(sub)
                if key is None:
                    continue
                key += spine.transpose
                tie = ties.get((spine.part, key))
                if tie is not None and ("_" in sub or "]" in sub):
                    tie[1] = now + length  # a tie goes on: the note it extends sounds longer
                    if "]" in sub:
                        del ties[(spine.part, key)]
                    continue
                note: list[Fraction | int] = [now, now + length, key]
                parts[spine.part].notes.append(note)
                count += 1
                if count > MAX_NOTES:
                    raise KernTooLarge(f"over {MAX_NOTES:,} notes, more than any piece holds")
                if "[" in sub:
                    ties[(spine.part, key)] = note
            if shortest is not None:
                spine.until = now + shortest
        # the next record starts when the first sounding token ends, unless this one took no time: no
        # token with a duration began on it (only nulls, grace notes, other spines' tokens such as a
        # figured-bass change) while a **kern spine has nothing sounding, or a spine path written on it
        # leaves a spine that starts its notes now
        waiting = [f for s, f in zip(spines, fields, strict=True) if s.kern and s.until <= now]
        began = any(s.kern and s.until > now and f not in (".", "") and not f.startswith("*")
                    for s, f in zip(spines, fields, strict=True))
        held = any(f.startswith("*") for f in waiting) or (bool(waiting) and not began)
        if any(f.startswith("*") for f in fields):  # a spine path on a data record: invalid, but written
            spines = _interpret([f if f.startswith("*") else "*" for f in fields], spines, parts, tempos, now)
        later = [s.until for s in spines if s.kern and s.until > now]
        if later and not held:
            now = min(later)
    if spines is None:
        raise KernError("no exclusive interpretation line (such as **kern)")
    return parts, tempos


def _interpret(fields: list[str], spines: list[Spine], parts: list[KernPart], tempos: list[tuple[Fraction, int]],
               now: Fraction) -> list[Spine]:
    """Apply one interpretation record: tandem interpretations to their spines, then the spine paths."""
    for spine, f in zip(spines, fields, strict=True):
        if f.startswith("*MM") and spine.kern:
            try:
                bpm = float(f[3:])
            except ValueError:
                continue
            if 1 <= bpm <= 60_000_000 and (not tempos or tempos[-1][0] != now):  # else an error, ignored
                tempos.append((now, round(60_000_000 / bpm)))
        elif (m := _TRANSPOSED.match(f)) and spine.kern:
            spine.transpose = -int(m.group(1))
        elif f.startswith('*I"') and spine.kern:
            parts[spine.part].name = f[3:]
        elif f.startswith("*I") and spine.kern and not f.startswith(("*IC", "*IG", "*ITr")):
            parts[spine.part].program = _code_program(f[2:])
    out: list[Spine] = []
    i = 0
    while i < len(fields):
        f, spine = fields[i], spines[i]
        if f == "*^":
            out += [spine, Spine(spine.kern, spine.part, spine.until, spine.transpose, spine.last)]
        elif f == "*v":
            j = i
            while j + 1 < len(fields) and fields[j + 1] == "*v":
                j += 1
            joined = spines[i:j + 1]
            spine.until = max(s.until for s in joined)
            out.append(spine)
            i = j
        elif f == "*x" and i + 1 < len(fields) and fields[i + 1] == "*x":
            out += [spines[i + 1], spine]
            i += 1
        elif f == "*+":
            out += [spine, Spine(False, -1, now)]  # its exclusive interpretation comes next
        elif f == "*-":
            pass
        elif f.startswith("**") and not spine.kern and spine.part == -1 and f.startswith("**kern"):
            parts.append(KernPart())
            out.append(Spine(True, len(parts) - 1, now))
        else:
            out.append(spine)
        i += 1
    return out


def _code_program(code: str) -> int | None:
    return KERN_PROGRAMS.get(code.lower())
