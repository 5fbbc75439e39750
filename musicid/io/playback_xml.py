"""MusicXML rewritten to what it plays, before partitura (or music21) reads it.

Three things in a MusicXML document change how it sounds that partitura 1.9 does not read, so
musicid rewrites them into what it does read (MusicXML 4.0 reference, the elements named):

- `<cue/>`: "a cue note is a silent note with no playback" (`<cue>`): a cue note becomes a
  `<forward>` of its duration (its voice keeps its place), a cue chord member or cue grace note
  is removed. OpenScore lieder put cue notes in 140 of their 1,116 files (the voice's line in the
  piano part); read as notes they would sound twice;
- `<octave-change>` in `<transpose>`: octaves added to the chromatic transposition (`<transpose>`):
  a guitar, a double bass or a bass clarinet sounds an octave below written, a piccolo one above;
  partitura keeps only `<chromatic>`;
- `<metronome>` in a `<direction>` with no `<sound tempo>`: the mark's tempo as a
  `<sound tempo>` in quarter notes a minute (`<sound>`: "tempo ... in quarter notes per minute";
  `<metronome>`: beat-unit, its dots, per-minute). A `<sound tempo>` given beside the mark wins.

A document with none of these is returned as it is, unparsed; one lxml cannot parse is returned
as it is too, for the readers to name its fault.
"""

from __future__ import annotations

import re
from typing import Any

# quarter notes in each <beat-unit> (MusicXML note-type-value)
QUARTERS = {"maxima": 32.0, "long": 16.0, "breve": 8.0, "whole": 4.0, "half": 2.0, "quarter": 1.0,
            "eighth": 0.5, "16th": 0.25, "32nd": 0.125, "64th": 0.0625, "128th": 0.03125}
_NUMBER = re.compile(r"\d+(?:\.\d+)?")  # per-minute as written: "60", "c. 60", "60-66" (the first number)


def playback_xml(doc: bytes) -> bytes:
    """The MusicXML document with cue notes silenced, octave changes folded into `<chromatic>`
    and metronome marks without a `<sound tempo>` given one (see the module docstring)."""
    if b"<cue" not in doc and b"<octave-change" not in doc and b"<metronome" not in doc:
        return doc
    from lxml import etree

    try:
        # entities were refused before (score_files.check_xml); resolve none, fetch nothing
        root = etree.fromstring(doc, etree.XMLParser(resolve_entities=False, no_network=True))
    except (etree.XMLSyntaxError, ValueError):
        return doc
    changed = _silence_cues(root) + _fold_octave_changes(root) + _sound_metronomes(root)
    if not changed:
        return doc
    return bytes(etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8"))


def _silence_cues(root: Any) -> int:
    from lxml import etree

    count = 0
    for note in [n for n in root.iter("note") if n.find("cue") is not None]:
        parent = note.getparent()
        if parent is None:
            continue
        if note.find("chord") is None and note.find("grace") is None and note.find("duration") is not None:
            forward = etree.Element("forward")
            for tag in ("duration", "voice", "staff"):
                if (child := note.find(tag)) is not None:
                    etree.SubElement(forward, tag).text = child.text
            forward.tail = note.tail
            parent.replace(note, forward)
        else:
            parent.remove(note)
        count += 1
    return count


def _int(text: str | None) -> int | None:
    try:
        return int((text or "").strip())
    except ValueError:
        return None


def _fold_octave_changes(root: Any) -> int:
    from lxml import etree

    count = 0
    for transpose in root.iter("transpose"):
        change = transpose.find("octave-change")
        if change is None:
            continue
        octaves = _int(change.text)
        transpose.remove(change)
        if not octaves:
            continue
        for tag, per_octave in (("chromatic", 12), ("diatonic", 7)):
            element = transpose.find(tag)
            if element is None:
                element = etree.SubElement(transpose, tag)
            element.text = str((_int(element.text) or 0) + per_octave * octaves)
        count += 1
    return count


def _sound_metronomes(root: Any) -> int:
    from lxml import etree

    count = 0
    for direction in root.iter("direction"):
        sound = direction.find("sound")
        if sound is not None and sound.get("tempo") is not None:
            continue
        metronome = direction.find("direction-type/metronome")
        if metronome is None:
            continue
        units = metronome.findall("beat-unit")
        per_minute = _NUMBER.search(metronome.findtext("per-minute") or "")
        if len(units) != 1 or per_minute is None or (units[0].text or "").strip() not in QUARTERS:
            continue  # a metric modulation (note = note) or a mark with no number sets no tempo
        dots = len(metronome.findall("beat-unit-dot"))
        quarters = QUARTERS[(units[0].text or "").strip()] * (2 - 0.5 ** dots)
        tempo = float(per_minute.group(0)) * quarters
        if not tempo > 0:
            continue
        if sound is None:
            sound = etree.SubElement(direction, "sound")
        sound.set("tempo", f"{tempo:g}")
        count += 1
    return count
