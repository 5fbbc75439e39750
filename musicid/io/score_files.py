"""A score file's bytes made safe before any parser sees them: `.mxl` archives opened by musicid (no
member outside the archive, none that inflates past MAX_XML_BYTES, read in bounded chunks whatever its
header claims), XML that declares entities refused (XXE, "billion laughs"), kern without a **kern spine
or with NUL bytes refused; and the composer the file names (MusicXML `<creator type="composer">`,
kern `!!!COM`). Every failure is a one-line ScoreError naming the file and the fault.
"""

from __future__ import annotations

import html
import io
import posixpath
import re
import zipfile
from pathlib import Path, PurePosixPath

from ..errors import ScoreError

MAX_SCORE_BYTES = 32 * 1024 * 1024  # a file as given (a 40-minute quartet's .mxl is under 1 MB)
MAX_XML_BYTES = 128 * 1024 * 1024  # the MusicXML inside an .mxl, inflated (the largest handed: 24 MB)

# ---------------------------------------------------------------- bytes in, safely


def _read_bounded(archive: zipfile.ZipFile, member: zipfile.ZipInfo, limit: int, name: str) -> bytes:
    """A zip member's bytes, read in chunks and stopped past limit whatever its header says."""
    if member.file_size > limit:
        raise ScoreError(f"{name}: {member.filename} inflates to {member.file_size / 1e6:.0f} MB, over the "
                         f"{limit / 1e6:.0f} MB limit for a score")
    out = bytearray()
    with archive.open(member) as f:
        while chunk := f.read(1 << 20):
            out += chunk
            if len(out) > limit:
                raise ScoreError(f"{name}: {member.filename} inflates past the {limit / 1e6:.0f} MB limit "
                                 "for a score (its header understates it)")
    return bytes(out)


def _inside(member: str) -> bool:
    """A path that names something inside an archive: relative, no '..' above its root."""
    if not member or member.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", member):
        return False
    return not posixpath.normpath(member.replace("\\", "/")).startswith("..")


def unzip_mxl(data: bytes, name: str) -> bytes:
    """The MusicXML document inside a compressed MusicXML (.mxl) archive (MusicXML 4.0, "Compressed
    files"): the rootfile META-INF/container.xml names, else the one .xml/.musicxml member outside
    META-INF. Raises ScoreError when the bytes are no zip, the container names a path outside the
    archive or a member it lacks, or the document inflates past MAX_XML_BYTES."""
    if not data.startswith(b"PK"):
        raise ScoreError(f"{name}: not a compressed MusicXML file (an .mxl is a zip archive)")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = {m.filename: m for m in archive.infolist() if not m.is_dir()}
        target = None
        if "META-INF/container.xml" in members:
            container = check_xml(_read_bounded(archive, members["META-INF/container.xml"], 1 << 20, name),
                                  f"{name}: META-INF/container.xml")
            # [^<>]: a tag's attributes never hold '<', and the search stays linear in the bytes
            m = re.search(rb"<rootfile\b[^<>]*?\bfull-path\s*=\s*[\"']([^\"'<>]*)[\"']", container)
            if m:
                target = html.unescape(m.group(1).decode("utf-8", "replace"))
                if not _inside(target):
                    raise ScoreError(f"{name}: its container points outside the archive ({target[:80]})")
                if target not in members:
                    raise ScoreError(f"{name}: its container names {target[:80]}, which the archive lacks")
        if target is None:
            docs = [n for n in members if not n.startswith("META-INF/") and _inside(n)
                    and PurePosixPath(n).suffix.lower() in (".xml", ".musicxml")]
            if not docs:
                raise ScoreError(f"{name}: the archive holds no MusicXML document")
            target = docs[0]
        return _read_bounded(archive, members[target], MAX_XML_BYTES, name)
    except ScoreError:
        raise
    except Exception as e:  # noqa: BLE001 - BadZipFile, zlib.error, encrypted members: one line, no traceback
        raise ScoreError(f"{name}: unreadable .mxl archive ({type(e).__name__}: {e})") from e


def check_xml(data: bytes, name: str) -> bytes:
    """data, if it may be handed to an XML parser: text, within MAX_XML_BYTES, declaring no
    entities. An entity declaration (`<!ENTITY`) is what both XML external entities (XXE) and
    nested expansion ("billion laughs") need, and no score needs one: it is refused outright."""
    if len(data) > MAX_XML_BYTES:
        raise ScoreError(f"{name}: {len(data) / 1e6:.0f} MB of XML, over the {MAX_XML_BYTES / 1e6:.0f} MB limit")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ScoreError(f"{name}: UTF-16 XML is not read (save it as UTF-8)")
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head.startswith(b"<") or b"\x00" in head:
        raise ScoreError(f"{name}: not XML (binary or text data where a MusicXML document should be)")
    declared = re.match(rb"<\?xml[^>]{0,200}?encoding\s*=\s*[\"']([A-Za-z0-9._-]{1,40})[\"']", head)
    if declared and not re.fullmatch(rb"(?i)utf-?8|us-ascii|ascii|iso-?8859-\d{1,2}|latin-?1|windows-125\d|cp125\d",
                                     declared.group(1)):
        raise ScoreError(f"{name}: XML in {declared.group(1).decode()} is not read (UTF-8, ASCII, ISO-8859 "
                         "and windows-125x are)")
    if re.search(rb"<!ENTITY", data):
        raise ScoreError(f"{name}: the XML declares entities, which no score needs (refused: XML external "
                         "entities and entity expansion are attacks)")
    return data


def composer_in(data: bytes, name: str) -> str | None:
    """The composer a score names (MusicXML `<creator type="composer">`, kern `!!!COM:`), whitespace
    collapsed; None where it names none. data: the file's bytes (an .mxl is opened)."""
    suffix = Path(name).suffix.lower()
    if suffix == ".krn":
        m = re.search(rb"^!!!COM[0-9]*:[ \t]*([^\r\n]+)", data[:1 << 20], re.MULTILINE)
        text = m.group(1).decode("utf-8", "replace") if m else ""
    else:
        xml = unzip_mxl(data, name) if suffix == ".mxl" and data.startswith(b"PK") else data
        m = re.search(rb"<creator\b[^<>]*type\s*=\s*[\"']composer[\"'][^<>]*>([^<]*)</creator>", xml)
        text = html.unescape(m.group(1).decode("utf-8", "replace")) if m else ""
    text = " ".join(text.split())
    return text or None


def check_kern(data: bytes, name: str) -> None:
    """Refuse what is not Humdrum **kern before a parser sees it: binary bytes, or no **kern spine
    (the exclusive interpretation line names the spines: `**kern`, `**dynam`, ...)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ScoreError(f"{name}: UTF-16 Humdrum is not read (save it as UTF-8)")
    if b"\x00" in data:
        raise ScoreError(f"{name}: not a Humdrum file (binary data)")
    for line in data.removeprefix(b"\xef\xbb\xbf").splitlines():
        if line.startswith(b"**"):
            if b"**kern" not in line:
                raise ScoreError(f"{name}: no **kern spine (its spines: {line.decode('utf-8', 'replace')[:80]})")
            return
        if line.strip() and not line.startswith(b"!"):
            break
    raise ScoreError(f"{name}: not a Humdrum **kern file (no exclusive interpretation line such as **kern)")


# ---------------------------------------------------------------- the notation libraries
