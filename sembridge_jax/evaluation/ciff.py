"""The Common Index File Format (CIFF): write and read an impact index as PISA, BMP and JASS import it.

The messages are the public schema `CommonIndexFileFormat.proto` of osirrc/ciff (package
io.osirrc.ciff), declared here as a protobuf descriptor (no generated code):

    Header       { int32 version = 1; int32 num_postings_lists = 2; int32 num_docs = 3;
                   int32 total_postings_lists = 4; int32 total_docs = 5;
                   int64 total_terms_in_collection = 6; double average_doclength = 7; string description = 8; }
    Posting      { int32 docid = 1; int32 tf = 2; }            docid: the gap to the previous posting's
    PostingsList { string term = 1; int64 df = 2; int64 cf = 3; repeated Posting postings = 4; }
    DocRecord    { int32 docid = 1; string collection_docid = 2; int32 doclength = 3; }

A file is a Header, then `num_postings_lists` PostingsList messages, then `num_docs` DocRecord
messages, each prefixed by its size as a varint (Java's writeDelimitedTo). For a learned sparse
index the `tf` of a posting is the document's integer impact for the term.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

VERSION = 1
_F = descriptor_pb2.FieldDescriptorProto
_SCHEMA = {
    "Header": [("version", _F.TYPE_INT32), ("num_postings_lists", _F.TYPE_INT32), ("num_docs", _F.TYPE_INT32),
               ("total_postings_lists", _F.TYPE_INT32), ("total_docs", _F.TYPE_INT32),
               ("total_terms_in_collection", _F.TYPE_INT64), ("average_doclength", _F.TYPE_DOUBLE),
               ("description", _F.TYPE_STRING)],
    "Posting": [("docid", _F.TYPE_INT32), ("tf", _F.TYPE_INT32)],
    "PostingsList": [("term", _F.TYPE_STRING), ("df", _F.TYPE_INT64), ("cf", _F.TYPE_INT64),
                     ("postings", "Posting")],
    "DocRecord": [("docid", _F.TYPE_INT32), ("collection_docid", _F.TYPE_STRING), ("doclength", _F.TYPE_INT32)],
}


def _message_classes() -> dict[str, type]:
    proto = descriptor_pb2.FileDescriptorProto(name="CommonIndexFileFormat.proto", package="io.osirrc.ciff",
                                               syntax="proto3")
    for name, fields in _SCHEMA.items():
        msg = proto.message_type.add(name=name)
        for number, (field, kind) in enumerate(fields, 1):
            if isinstance(kind, str):  # a repeated message field
                msg.field.add(name=field, number=number, type=_F.TYPE_MESSAGE, label=_F.LABEL_REPEATED,
                              type_name=f".io.osirrc.ciff.{kind}")
            else:
                msg.field.add(name=field, number=number, type=kind, label=_F.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    file = pool.Add(proto)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{file.package}.{name}"))
            for name in _SCHEMA}


MESSAGES = _message_classes()


@dataclasses.dataclass
class CiffIndex:
    """A CIFF file's content: postings with absolute docids (the gaps undone)."""

    header: dict
    postings: dict[str, tuple[np.ndarray, np.ndarray]]  # term -> (docids ascending, tfs)
    doc_ids: list[str]  # collection_docid by internal docid
    doc_lengths: np.ndarray


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def write_ciff(path: str | Path, postings: Iterable[tuple[str, np.ndarray, np.ndarray]], doc_ids: list[str],
               doc_lengths: np.ndarray, *, num_terms: int, description: str = "") -> Path:
    """Write a CIFF file. `postings` yields (term, docids ascending, positive tfs) in the engines'
    term order (sorted by UTF-8 bytes); `num_terms` is how many it yields; `doc_lengths` [num_docs]."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lengths = np.asarray(doc_lengths, np.int64)
    header = MESSAGES["Header"](
        version=VERSION, num_postings_lists=num_terms, num_docs=len(doc_ids), total_postings_lists=num_terms,
        total_docs=len(doc_ids), total_terms_in_collection=int(lengths.sum()),
        average_doclength=float(lengths.mean()) if len(lengths) else 0.0, description=description)

    def delimited(message) -> bytes:
        data = message.SerializeToString()
        return _varint(len(data)) + data

    written = 0
    with open(path, "wb") as f:
        f.write(delimited(header))
        for term, docids, tfs in postings:
            gaps = np.diff(np.asarray(docids, np.int64), prepend=0)
            plist = MESSAGES["PostingsList"](term=term, df=len(gaps), cf=int(np.sum(tfs)))
            plist.postings.extend(MESSAGES["Posting"](docid=int(g), tf=int(t)) for g, t in zip(gaps, tfs, strict=True))
            f.write(delimited(plist))
            written += 1
        for n, (doc_id, length) in enumerate(zip(doc_ids, lengths, strict=True)):
            f.write(delimited(MESSAGES["DocRecord"](docid=n, collection_docid=doc_id, doclength=int(length))))
    if written != num_terms:
        raise ValueError(f"write_ciff: num_terms={num_terms} but {written} postings lists were given")
    return path


def _messages(data: bytes, path: Path) -> Iterator[bytes]:
    """The body of each size-prefixed message."""
    pos = 0
    while pos < len(data):
        start, size, shift = pos, 0, 0
        while True:
            if pos >= len(data):
                raise ValueError(f"{path}: truncated varint at byte {start}")
            byte = data[pos]
            pos += 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if pos + size > len(data):
            raise ValueError(f"{path}: message at byte {start} runs past the end of the file")
        yield data[pos:pos + size]
        pos += size


def read_ciff(path: str | Path) -> CiffIndex:
    """Parse a CIFF file (gap-encoded docids are accumulated back). Raises ValueError naming the file
    when the message counts do not match the header."""
    path = Path(path)
    messages = _messages(path.read_bytes(), path)
    header = MESSAGES["Header"].FromString(next(messages, b""))
    postings = {}
    for _ in range(header.num_postings_lists):
        body = next(messages, None)
        if body is None:
            raise ValueError(f"{path}: the header announces {header.num_postings_lists} postings lists, "
                             f"found {len(postings)}")
        plist = MESSAGES["PostingsList"].FromString(body)
        docids = np.cumsum([p.docid for p in plist.postings], dtype=np.int64)
        postings[plist.term] = (docids, np.array([p.tf for p in plist.postings], np.int64))
    records = [MESSAGES["DocRecord"].FromString(body) for body in messages]
    if len(records) != header.num_docs:
        raise ValueError(f"{path}: the header announces {header.num_docs} documents, found {len(records)} records")
    fields = [name for name, _ in _SCHEMA["Header"]]
    return CiffIndex({k: getattr(header, k) for k in fields}, postings, [r.collection_docid for r in records],
                     np.array([r.doclength for r in records], np.int64))
