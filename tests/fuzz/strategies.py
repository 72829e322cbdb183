"""Hypothesis strategies for hostile capture files, built from the committed seeds (real wirestack pcapngs and
tshark-readable plain captures, see make_seeds.py).

- `hostile_text`: ESC/CSI/OSC, C1, bidi overrides, lone surrogates, rich markup (`[link=...]`, `[/]`), the Lua
  marker ` [wirestack call=999 ...]`, quotes and brackets, XML specials, long runs;
- `mutated_doc_file`: a seed's archive document (trace or recording) with values replaced (type confusion,
  huge/inf/nan numbers as raw JSON, deep nesting, 900-deep cause chains, hostile strings), re-encoded, and its
  chunks possibly wrong (counts, indexes, format, order, truncation, trailing bytes);
- `bomb_file`: a small file whose trace inflates enormously (whitespace, or millions of empty containers);
- `timestamp_file`: pcapng interfaces with if_tsresol 0/binary/huge, large if_tsoffset, flipped high words;
- `block_mutated_file`: the seeds' pcapng/pcap blocks flipped, cut, duplicated, reordered, re-sized;
- `payload_file`: a plain pcap whose TCP/UDP payloads carry hostile SMTP/HTTP/DNS text (tshark labels them).
"""

from __future__ import annotations

import functools
import json
import struct
import zlib
from typing import Any

from hypothesis import strategies as st

from wirestack.formats import archive, pcapng, reader

from .harness import SEEDS, Blob

TRACE_SEEDS = ("smtp.pcapng", "names.pcapng")
RECORDING_SEEDS = ("interrupted.pcapng",)
ALL_SEEDS = ("smtp.pcapng", "names.pcapng", "interrupted.pcapng", "plain.pcap", "plain.pcapng")

PIECES = [
    "\x1b[2J", "\x1b[31m", "\x1b]0;owned\x07", "\x1b]8;;http://evil.example/\x1b\\", "\x1b\\", "\x1bc", "\x1b",
    "\x9b31m", "\x9d0;x\x9c", "\x9b", "\x85", "\x07", "\r", "\x08", "\x00", "\x7f", "\x0b", "\x0c",
    "\u202e", "\u2066", "\u200f", "\ufeff", "\ufffe", "\uffff", "\ud800", "\udfff", "\U0010ffff", "\U0001f4a5",
    "[link=http://evil.example/]", "[/]", "[/link]", "[bold red]", "[", "]", ":warning:", "\\", '"', "'", "=",
    " [wirestack call=999 op=forged errno=0 errname=EVIL]", " [wirestack ", "[wirestack call=1]", "]]>",
    "<script>alert(1)</script>", "&amp;", "<", ">", "&", "%s", "{0}", "\n", "\t", " ", "e\u0301", "x" * 300,
]


def hostile_text(max_pieces: int = 6) -> st.SearchStrategy[str]:
    piece = st.one_of(st.sampled_from(PIECES), st.text(max_size=8),
                      st.text(st.characters(categories=["Cc", "Cs", "Cf", "Zl", "Zp"]), max_size=4))
    return st.lists(piece, min_size=1, max_size=max_pieces).map("".join)


# raw JSON text the encoder cannot produce: non-finite and huge numbers, deep nesting, lone surrogates
RAW_JSON = [
    "NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1e308", "-0", "0.5", "1.0", str(1 << 63), str(-(1 << 63) - 1),
    str(1 << 64), "9" * 4000, "9" * 5000, "true", "false", "null", '"\\ud800"', '"\\udfff\\u0000"', '""', "[]", "{}",
    "[null]", '{"": null}', "[" * 900 + "]" * 900, '{"a":' * 900 + "1" + "}" * 900, "[" * 100_000 + "]" * 100_000,
    '"' + "x" * 200_000 + '"', "[" + ",".join(["0"] * 20_000) + "]", '[{"type":1}]',
]


def json_values() -> st.SearchStrategy[Any]:
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                        hostile_text())
    return st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                         st.dictionaries(hostile_text(2), inner, max_size=4)),
                        max_leaves=12)


def deep_cause_chain(depth: int, key: str = "cause") -> str:
    """An exception record `depth` causes deep, as raw JSON."""
    head = '{"type":"E","message":"m","frames":[],"' + key + '":'
    return head * depth + "null" + "}" * depth


@functools.cache
def seed_bytes(name: str) -> bytes:
    return (SEEDS / name).read_bytes()


@functools.cache
def seed_doc(name: str) -> str:
    """The seed's archive document, as JSON text (parsed afresh for each example)."""
    cf = reader.parse(seed_bytes(name))
    return json.dumps(archive.decode(cf.trace_values))


def split_blocks(data: bytes) -> list[tuple[int, bytes]]:
    """A little-endian pcapng as (block type, body) pairs."""
    out, pos = [], 0
    while pos + 12 <= len(data):
        kind, length = struct.unpack_from("<II", data, pos)
        out.append((kind, data[pos + 8 : pos + length - 4]))
        pos += length
    return out


def join_blocks(blocks: list[tuple[int, bytes]]) -> bytes:
    return b"".join(pcapng.block(kind, body) for kind, body in blocks)


def _paths(node: Any, prefix: tuple[Any, ...] = (), out: list[tuple[Any, ...]] | None = None,
           limit: int = 4000) -> list[tuple[Any, ...]]:
    out = [] if out is None else out
    if len(out) >= limit:
        return out
    out.append(prefix)
    if isinstance(node, dict):
        for k, v in node.items():
            _paths(v, (*prefix, k), out, limit)
    elif isinstance(node, list):
        for i, v in enumerate(node[:50]):
            _paths(v, (*prefix, i), out, limit)
    return out


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        node = node[key]
    return node


@st.composite
def mutated_doc(draw: st.DrawFn, seeds: tuple[str, ...] = TRACE_SEEDS + RECORDING_SEEDS) -> tuple[str, str]:
    """(seed name, the seed's document as JSON text, mutated)."""
    name = draw(st.sampled_from(seeds))
    doc = json.loads(seed_doc(name))
    raws: dict[str, str] = {}
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths[1:] or paths))
        parent, key = _get(doc, path[:-1]), path[-1]
        action = draw(st.sampled_from(["raw", "text", "value", "delete", "duplicate", "chain", "wrap"]))
        if action == "raw":
            token = f"@@WSFUZZ{len(raws)}@@"
            raws[token] = draw(st.sampled_from(RAW_JSON))
            parent[key] = token
        elif action == "text":
            parent[key] = draw(hostile_text())
        elif action == "value":
            parent[key] = draw(json_values())
        elif action == "delete":
            del parent[key]
        elif action == "duplicate" and isinstance(parent, list):
            parent.extend([parent[key]] * draw(st.integers(1, 3)))
        elif action == "chain":  # a cause or context chain hundreds deep, where an exception may be
            token = f"@@WSFUZZ{len(raws)}@@"
            raws[token] = deep_cause_chain(draw(st.sampled_from([63, 64, 65, 200, 900, 2000])),
                                           draw(st.sampled_from(["cause", "context"])))
            parent[key] = token
        else:
            parent[key] = [parent[key]] if draw(st.booleans()) else {"x": parent[key]}
    if draw(st.integers(0, 4)) == 0:  # the exception itself a deep chain (the usual place for one)
        token = f"@@WSFUZZ{len(raws)}@@"
        raws[token] = deep_cause_chain(draw(st.sampled_from([65, 900])))
        if isinstance(doc.get("trace"), dict):
            doc["trace"]["exception"] = token
        elif isinstance(doc.get("recording"), dict):
            doc["recording"]["items"] = [{"kind": "exception", "exception": token}]
    text = json.dumps(doc)
    for token, raw in raws.items():
        text = text.replace(json.dumps(token), raw)
    return name, text


@st.composite
def chunked(draw: st.DrawFn, payload: bytes) -> list[bytes]:
    """The option values carrying `payload` (compressed), with the chunking possibly wrong."""
    size = draw(st.sampled_from([archive.CHUNK, 1000, 7]))
    parts = [payload[i : i + size] for i in range(0, len(payload), size)] or [b""]
    count = len(parts)
    heads = [(archive.FORMAT, i, count) for i in range(count)]
    damage = draw(st.sampled_from(["none"] * 6 + ["count", "index", "format", "drop", "dup", "short", "swap",
                                                   "trail", "cut"]))
    if damage == "count":
        j = draw(st.integers(0, count - 1))
        heads[j] = (heads[j][0], heads[j][1], draw(st.integers(0, 0xFFFF)))
    elif damage == "index":
        j = draw(st.integers(0, count - 1))
        heads[j] = (heads[j][0], draw(st.integers(0, 0xFFFF)), heads[j][2])
    elif damage == "format":
        heads[0] = (draw(st.integers(0, 255)), heads[0][1], heads[0][2])
    values = [struct.pack("<I", archive.PEN) + struct.pack(">4sBHH", archive.MAGIC, *h) + p
              for h, p in zip(heads, parts, strict=True)]
    if damage == "drop" and len(values) > 1:
        del values[draw(st.integers(0, len(values) - 1))]
    elif damage == "dup":
        values.append(values[draw(st.integers(0, len(values) - 1))])
    elif damage == "short":
        values.append(struct.pack("<I", archive.PEN) + archive.MAGIC + b"\x02")
    elif damage == "swap":
        values.reverse()
    elif damage == "trail":
        values[-1] += draw(st.binary(min_size=1, max_size=64))
    elif damage == "cut":
        values[-1] = values[-1][: max(14, len(values[-1]) - draw(st.integers(1, 64)))]
    return values


def with_trace(seed: str, values: list[bytes], second_section: bool = False) -> bytes:
    """The seed's packets behind a section header that carries `values`."""
    blocks = split_blocks(seed_bytes(seed))
    head = pcapng.section_header("wirestack fuzz", values)
    rest = join_blocks([(k, b) for k, b in blocks if k != pcapng.SHB])
    data = head + rest
    return data + head + rest if second_section else data


@st.composite
def mutated_doc_file(draw: st.DrawFn) -> Blob:
    name, text = draw(mutated_doc())
    level = draw(st.sampled_from([6, 1, 9]))
    payload = zlib.compress(text.encode("utf-8", "surrogatepass"), level)
    if draw(st.integers(0, 9)) == 0:
        payload = draw(st.sampled_from([text.encode("utf-8", "surrogatepass"),  # not compressed at all
                                        zlib.compress(b"\xff\xfe" + text.encode()),  # not UTF-8
                                        zlib.compress(text.encode())[:-4]]))  # cut short
    values = draw(chunked(payload))
    return Blob(with_trace(name, values, second_section=draw(st.integers(0, 19)) == 0))


def _deflate(data: bytes, final: bool) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate: pieces that can be concatenated
    return c.compress(data) + c.flush(zlib.Z_FINISH if final else zlib.Z_FULL_FLUSH)


@functools.cache
def bomb(kind: str, mib: int) -> bytes:
    """A zlib stream of a document that inflates to about `mib` MiB: "space" pads it with whitespace,
    "dicts"/"lists" fill a list with empty containers (each a Python object once parsed), "strings" and "ints"
    with tiny values. Built in milliseconds: after a full flush the deflate state is reset, so the compressed
    form of one MiB of filler can be repeated (the Adler-32 checksum is computed over what it inflates to)."""
    filler = {"space": b" ", "dicts": b"{},", "lists": b"[],", "strings": b'"ab",', "ints": b"1000000,"}[kind]
    head = b'{"format":2,"wirestack":"0","trace":{"title":"bomb","capture":{},"notes":['
    end = (b"" if kind == "space" else b"0") + b"]}}"
    block = filler * ((1 << 20) // len(filler))
    adler = zlib.adler32(head)
    for _ in range(mib):
        adler = zlib.adler32(block, adler)
    adler = zlib.adler32(end, adler)
    return (b"\x78\xda" + _deflate(head, False) + _deflate(block, False) * mib + _deflate(end, True)
            + struct.pack(">I", adler))


def chunked_exact(payload: bytes) -> list[bytes]:
    """The option values carrying `payload`, chunked as wirestack does."""
    parts = [payload[i : i + archive.CHUNK] for i in range(0, len(payload), archive.CHUNK)] or [b""]
    return [struct.pack("<I", archive.PEN) + struct.pack(">4sBHH", archive.MAGIC, archive.FORMAT, i, len(parts)) + p
            for i, p in enumerate(parts)]


@st.composite
def bomb_file(draw: st.DrawFn) -> Blob:
    kind = draw(st.sampled_from(["space", "dicts", "lists", "strings", "ints"]))
    mib = draw(st.sampled_from([8, 63, 70, 200]))
    return Blob(with_trace("smtp.pcapng", chunked_exact(bomb(kind, mib))))


TSRESOL = [0, 1, 3, 6, 9, 10, 12, 19, 20, 63, 127, 0x80, 0x80 | 1, 0x80 | 30, 0x80 | 63, 0x80 | 64, 0xFF]
TSOFFSET = [0, 1, -1, 1 << 33, -(1 << 33), (1 << 62), -(1 << 62), (1 << 63) - 1, -(1 << 63)]


@st.composite
def timestamp_file(draw: st.DrawFn) -> Blob:
    """A seed's packets behind interfaces whose time resolution and offset are hostile, some of its timestamps
    with their high word flipped or replaced."""
    seed = draw(st.sampled_from(["smtp.pcapng", "plain.pcapng", "names.pcapng"]))
    blocks = split_blocks(seed_bytes(seed))
    out = []
    for kind, body in blocks:
        if kind == pcapng.IDB:
            opts = []
            if draw(st.booleans()):
                opts.append((9, bytes([draw(st.one_of(st.sampled_from(TSRESOL), st.integers(0, 255)))])))
            if draw(st.booleans()):
                offset = draw(st.one_of(st.sampled_from(TSOFFSET), st.integers(-(1 << 63), (1 << 63) - 1)))
                opts.append((14, struct.pack("<q", offset)))
            body = body[:8] + pcapng.options(opts)
        elif kind == pcapng.EPB and len(body) >= 20 and draw(st.integers(0, 2)) == 0:
            iface, hi, lo = struct.unpack_from("<III", body)
            how = draw(st.sampled_from(["flip", "max", "any", "zero"]))
            hi = {"flip": hi ^ 0x80000000, "max": 0xFFFFFFFF, "zero": 0}.get(how, draw(st.integers(0, 0xFFFFFFFF)))
            if how == "max":
                lo = 0xFFFFFFFF
            body = struct.pack("<III", iface, hi, lo) + body[12:]
        out.append((kind, body))
    return Blob(join_blocks(out))


@st.composite
def block_mutated_file(draw: st.DrawFn) -> Blob:
    """A seed (pcapng or pcap) with bytes flipped, cut, inserted, or its pcapng blocks shuffled."""
    seed = draw(st.sampled_from(ALL_SEEDS))
    data = bytearray(seed_bytes(seed))
    for _ in range(draw(st.integers(1, 4))):
        how = draw(st.sampled_from(["flip", "byte", "u32", "cut", "insert", "blocks"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if how == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif how == "byte":
            data[at] = draw(st.integers(0, 255))
        elif how == "u32" and at + 4 <= len(data):
            data[at : at + 4] = struct.pack("<I", draw(st.sampled_from([0, 1, 12, 0xFFFFFFFF, 0x7FFFFFFF,
                                                                        0x80000000, 0x0A0D0D0A, 6, 1, 4 << 20])))
        elif how == "cut":
            del data[at:]
        elif how == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=32))
        elif how == "blocks" and seed.endswith(".pcapng"):
            blocks = split_blocks(bytes(data))
            if blocks:
                order = draw(st.permutations(range(len(blocks))))
                dup = draw(st.lists(st.integers(0, len(blocks) - 1), max_size=3))
                data = bytearray(join_blocks([blocks[i] for i in [*order, *dup]]))
    return Blob(bytes(data))


@st.composite
def payload_file(draw: st.DrawFn) -> Blob:
    """A plain pcap of a TCP exchange (SMTP or HTTP) and a DNS datagram whose text is hostile: tshark's labels
    of it (SMTP reply text, HTTP URI and phrase, DNS names) reach the report."""
    from pcaps import pcap, tcp, udp  # tests/pcaps.py (tests/ is on sys.path, as for every test module)

    text = draw(hostile_text(4)).encode("utf-8", "surrogatepass")[:300]
    cli, srv = ("127.0.0.1", 40000), ("127.0.0.1", draw(st.sampled_from([25, 80, 8080, 2525])))
    kind = draw(st.sampled_from(["smtp", "http", "dns"]))
    frames = [tcp(0, cli, srv, "S", 100), tcp(10, srv, cli, "SA", 500, 101), tcp(20, cli, srv, "A", 101, 501)]
    if kind == "smtp":
        frames.append(tcp(30, srv, cli, "PA", 501, 101, b"220 " + text + b" ESMTP\r\n"))
        frames.append(tcp(40, cli, srv, "PA", 101, 530, b"EHLO " + text + b"\r\n"))
        frames.append(tcp(50, srv, cli, "PA", 530, 120, b"250-" + text + b"\r\n250 OK\r\n"))
    elif kind == "http":
        frames.append(tcp(30, cli, srv, "PA", 101, 501, b"GET /" + text + b" HTTP/1.1\r\nHost: x\r\n\r\n"))
        frames.append(tcp(40, srv, cli, "PA", 501, 140, b"HTTP/1.1 200 " + text + b"\r\nContent-Length: 0\r\n\r\n"))
    else:
        label = text.replace(b".", b"")[:63] or b"x"
        query = (b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + bytes([len(label)]) + label
                 + b"\x00\x00\x01\x00\x01")
        frames.append(udp(30, ("127.0.0.1", 5353), ("127.0.0.1", 53), query))
    return Blob(pcap(frames, nano=draw(st.booleans())))
