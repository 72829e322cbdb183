"""Reading capture files: pcap (classic, µs or ns, either byte order) and pcapng (any number of sections and
interfaces, EPB/SPB/PB, if_tsresol and if_tsoffset), as written by tcpdump, dumpcap, Wireshark or wirestack.

`load(path)` is the IO edge: it reads the file once. `parse(data)` is pure: it indexes the packets (time, offset,
captured and wire length, link type) without decoding them, so a million-packet file costs a few arrays, not a
million objects; `packet(i)` decodes one on demand. A file cut short or damaged keeps every packet before the
break, and `error` says where it broke. A wirestack pcapng also yields the values of its trace options (see
`wirestack.formats.archive`).
"""

from __future__ import annotations

import struct
from array import array
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..core.dissect import dissect
from ..errors import ReadError as ReadError
from ..model import CaptureInfo, Packet, Trace
from . import archive

PCAPNG_SHB = 0x0A0D0D0A
_PCAP_MAGICS = {  # magic as read little-endian -> (byte order, nanosecond resolution)
    0xA1B2C3D4: ("<", False), 0xD4C3B2A1: (">", False), 0xA1B23C4D: ("<", True), 0x4D3CB2A1: (">", True),
}


@dataclass
class CaptureFile:
    """The packets of a capture file, indexed but not decoded. Packet numbers (ids) start at 1, as in Wireshark."""

    format: str  # "pcap" or "pcapng"
    data: bytes = field(repr=False)
    times: array[int] = field(default_factory=lambda: array("q"), repr=False)
    offsets: array[int] = field(default_factory=lambda: array("Q"), repr=False)
    caplens: array[int] = field(default_factory=lambda: array("I"), repr=False)
    wirelens: array[int] = field(default_factory=lambda: array("I"), repr=False)
    links: array[int] = field(default_factory=lambda: array("H"), repr=False)  # link type of each packet
    ifaces: array[int] = field(default_factory=lambda: array("I"), repr=False)  # interface id of each packet
    interfaces: list[str] = field(default_factory=list)  # pcapng: each interface's if_name ("" if none), by id
    application: str = ""  # the SHB's shb_userappl (pcapng)
    trace_values: list[bytes] = field(default_factory=list, repr=False)  # our SHB custom options, PEN removed
    error: str | None = None  # where the file broke, if it did

    def __len__(self) -> int:
        return len(self.times)

    @property
    def linktypes(self) -> list[int]:
        return sorted(set(self.links))

    def raw(self, pid: int) -> bytes:
        off = self.offsets[pid - 1]
        return self.data[off : off + self.caplens[pid - 1]]

    def packet(self, pid: int) -> Packet:
        i = pid - 1
        p = dissect(pid, self.times[i], self.raw(pid), self.links[i], self.wirelens[i])
        iface = self.ifaces[i] if i < len(self.ifaces) else 0
        return replace(p, interface=iface) if iface else p


def load(path: str | Path) -> CaptureFile:
    """Read and index a capture file. Raises ReadError for a file that is missing, unreadable or no capture."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except IsADirectoryError:
        raise ReadError(f"cannot read {path}: it is a folder") from None
    except OSError as exc:
        raise ReadError(f"cannot read {path}: {exc.strerror}") from None
    return parse(data, str(path))


def parse(data: bytes, name: str = "the file") -> CaptureFile:
    if len(data) >= 4 and struct.unpack_from("<I", data)[0] == PCAPNG_SHB:
        return _pcapng(data)
    if len(data) >= 4 and struct.unpack_from("<I", data)[0] in _PCAP_MAGICS:
        return _pcap(data)
    if not data:
        raise ReadError(f"{name} is empty: not a pcap or pcapng file")
    head = data[:8].decode("ascii", "replace")
    shown = repr(head) if head.isprintable() else data[:4].hex()
    raise ReadError(f"{name} is not a pcap or pcapng file (it starts with {shown})")


def _pcap(data: bytes) -> CaptureFile:
    order, nano = _PCAP_MAGICS[struct.unpack_from("<I", data)[0]]
    if len(data) < 24:
        raise ReadError(f"the pcap file header is cut short ({len(data)} of 24 bytes)")
    link = struct.unpack_from(order + "I", data, 20)[0] & 0xFFFF
    cf = CaptureFile("pcap", data)
    scale = 1 if nano else 1000
    rec = struct.Struct(order + "IIII")
    times, offsets, caplens, wirelens = cf.times, cf.offsets, cf.caplens, cf.wirelens
    pos, end = 24, len(data)
    unpack = rec.unpack_from
    while pos + 16 <= end:
        sec, frac, incl, orig = unpack(data, pos)
        if pos + 16 + incl > end:
            cf.error = f"cut short at byte {end}: packet {len(times) + 1} needs {incl} bytes from byte {pos + 16}"
            break
        if incl > 0x4000000:
            cf.error = f"damaged at byte {pos}: packet {len(times) + 1} claims {incl} bytes"
            break
        times.append(min(sec * 1_000_000_000 + frac * scale, MAX_NS))
        offsets.append(pos + 16)
        caplens.append(incl)
        wirelens.append(orig)
        pos += 16 + incl
    else:
        if pos != end:
            cf.error = f"cut short at byte {end}: the header of packet {len(times) + 1} is incomplete"
    cf.links = array("H", [link]) * len(times)
    return cf


@dataclass
class _Interface:
    link: int
    units: int = 6  # if_tsresol: 10^-6 unless told
    binary: bool = False
    offset_s: int = 0  # if_tsoffset


MAX_NS = (1 << 63) - 1


def _to_ns(ts: int, iface: _Interface) -> int | None:
    """A timestamp in nanoseconds since the epoch; None when it does not fit in int64 nanoseconds (a damaged
    if_tsresol or if_tsoffset, a flipped high word)."""
    base = iface.offset_s * 1_000_000_000
    if iface.binary:
        ns = ((ts * 1_000_000_000) >> min(iface.units, 127)) + base
    elif iface.units <= 9:
        ns = ts * 10 ** (9 - iface.units) + base
    else:
        ns = ts // 10 ** min(iface.units - 9, 120) + base
    return ns if 0 <= ns <= MAX_NS else None


def _options(data: bytes, pos: int, end: int, order: str) -> list[tuple[int, bytes]]:
    out = []
    while pos + 4 <= end:
        code, length = struct.unpack_from(order + "HH", data, pos)
        if code == 0 or pos + 4 + length > end:
            break
        out.append((code, data[pos + 4 : pos + 4 + length]))
        pos += 4 + length + (-length % 4)
    return out


def _pcapng(data: bytes) -> CaptureFile:
    cf = CaptureFile("pcapng", data)
    times, offsets, caplens, wirelens, links = cf.times, cf.offsets, cf.caplens, cf.wirelens, cf.links
    order = "<"
    ifaces: list[_Interface] = []
    pos, end, n, base = 0, len(data), 0, 0
    epb = struct.Struct("<IIIII")
    while pos < end:
        n += 1
        if pos + 12 > end:
            cf.error = f"cut short at byte {end}: block {n} (from byte {pos}) is incomplete"
            break
        kind = struct.unpack_from(order + "I", data, pos)[0]
        if kind == PCAPNG_SHB:
            magic = data[pos + 8 : pos + 12]
            order = "<" if magic == b"\x4d\x3c\x2b\x1a" else ">" if magic == b"\x1a\x2b\x3c\x4d" else ""
            if not order:
                cf.error = f"damaged at byte {pos}: a section header with an unknown byte-order magic"
                break
            epb = struct.Struct(order + "IIIII")
            ifaces = []
            base = len(cf.interfaces)  # a new section numbers its interfaces from 0 again
        length = struct.unpack_from(order + "I", data, pos + 4)[0]
        if length < 12 or length % 4:
            cf.error = f"damaged at byte {pos}: block {n} has an impossible length ({length})"
            break
        if pos + length > end:
            what = f"packet {len(times) + 1}" if kind in (2, 3, 6) else f"block {n}"
            cf.error = f"cut short at byte {end}: {what} needs {length} bytes from byte {pos}"
            break
        body, stop = pos + 8, pos + length - 4
        if kind == 6 and stop - body >= 20:
            iface, hi, lo, cap, orig = epb.unpack_from(data, body)
            if iface >= len(ifaces) or body + 20 + cap > stop:
                cf.error = f"damaged at byte {pos}: packet {len(times) + 1} names interface {iface} or overruns"
                break
            ns = _to_ns((hi << 32) | lo, ifaces[iface])
            if ns is None:
                cf.error = f"damaged at byte {pos}: packet {len(times) + 1} has a timestamp out of range"
                break
            times.append(ns)
            offsets.append(body + 20)
            caplens.append(cap)
            wirelens.append(orig)
            links.append(ifaces[iface].link)
            cf.ifaces.append(base + iface)
        elif kind == PCAPNG_SHB:
            for code, value in _options(data, body + 16, stop, order):
                if code == 4:
                    cf.application = value.decode("utf-8", "replace")
                elif code in (2988, 2989, 19372, 19373) and len(value) >= 4:
                    pen = struct.unpack_from(order + "I", value)[0]
                    if archive.is_ours(value[4:], pen):
                        cf.trace_values.append(value[4:])
        elif kind == 1 and stop - body >= 8:
            link = struct.unpack_from(order + "H", data, body)[0]
            iface_ = _Interface(link)
            cf.interfaces.append("")
            for code, value in _options(data, body + 8, stop, order):
                if code == 2:
                    cf.interfaces[-1] = value.decode("utf-8", "replace")[:255]
                elif code == 9 and value:
                    iface_.binary, iface_.units = bool(value[0] & 0x80), value[0] & 0x7F
                elif code == 14 and len(value) == 8:
                    iface_.offset_s = struct.unpack_from(order + "q", value)[0]
            ifaces.append(iface_)
        elif kind == 3 and ifaces and stop - body >= 4:  # simple packet block: no timestamp
            orig = struct.unpack_from(order + "I", data, body)[0]
            times.append(0)
            offsets.append(body + 4)
            caplens.append(min(orig, stop - body - 4))
            wirelens.append(orig)
            links.append(ifaces[0].link)
            cf.ifaces.append(base)
        elif kind == 2 and stop - body >= 20:  # obsolete packet block
            iface, _drops, hi, lo, cap, orig = struct.unpack_from(order + "HHIIII", data, body)
            ns = _to_ns((hi << 32) | lo, ifaces[iface]) if iface < len(ifaces) else None
            if ns is not None and body + 20 + cap <= stop:
                times.append(ns)
                offsets.append(body + 20)
                caplens.append(cap)
                wirelens.append(orig)
                links.append(ifaces[iface].link)
                cf.ifaces.append(base + iface)
        pos += length
    return cf


def recorded_trace(cf: CaptureFile) -> Trace | None:
    """The trace a wirestack pcapng carries, with the file's packets; None for any other capture. Raises
    `archive.ArchiveError` when the trace is there but cannot be read. If the packets are not those the run
    recorded (the file was filtered or edited since), the pairing is made again on the packets present and a
    note says so."""
    if not cf.trace_values:
        return None
    doc = archive.decode(cf.trace_values)
    if not isinstance(doc.get("trace"), dict):
        return None  # a recording saved without its analysis: see `saved_recording`
    packets = [cf.packet(i + 1) for i in range(len(cf))]
    found = doc.get("packets")
    info: dict[str, object] = found if isinstance(found, dict) else {}
    count = info.get("count")
    same = count == len(packets) and info.get("digest") == archive.digest((p.time_ns, p.raw) for p in packets)
    trace = archive.trace_from_doc(doc["trace"], packets)
    if same:
        return archive.with_labels(trace, doc)
    note = (f"this file holds {len(packets)} of the {count} packets the run recorded" if count != len(packets)
            else "this file's packets differ from those the run recorded")
    note += (" (the file is cut short)" if cf.error else " (it was filtered or edited after wirestack wrote it)")
    note += ": calls and packets were paired again on what is there"
    return replace(trace, notes=(*trace.notes, note))


def saved_recording(cf: CaptureFile) -> dict[str, Any] | None:
    """The raw recording an interrupted run saved instead of its trace (unchecked: `commands.read` feeds its
    items through the probe's validating loader), or None."""
    if not cf.trace_values:
        return None
    doc = archive.decode(cf.trace_values)
    recording = doc.get("recording")
    return recording if isinstance(recording, dict) else None


def plain_trace(cf: CaptureFile, path: str) -> Trace:
    """A capture without a wirestack trace, as a Trace of packets only (no calls, nothing traced)."""
    packets = tuple(cf.packet(i + 1) for i in range(len(cf)))
    linktype = cf.links[0] if len(cf.links) else 1
    info = CaptureInfo("", path, len(packets), len(packets), 0, linktype, cf.format, cf.application)
    notes = (f"the file is {cf.error}: what comes before is shown",) if cf.error else ()
    return Trace(path, "", packets, (), None, info, packets[0].time_ns if packets else 0, None, notes, traced=False)
