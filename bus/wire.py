"""The wire's building blocks under bus/messages.py: the one error type, stage stamps, and the
per-type field schemas that `decode` checks every header against.

A schema is compiled once per message class from its dataclass fields and type hints; checking a
field is then one exact-type test (bool is not an int here) and one range test, fast enough for
every hop. From the schema, each class also gets its decoder and encoder as straight-line code (the
way dataclasses makes __init__): every hop decodes one message and encodes one, and a loop over the
schema asking each field's kind cost about as much as the msgpack work itself (bench/bus_hop.py).

Every field is range-checked at decode (issue #23: no input crashes a node): an int lies within
its field's (lo, hi), never past SQLite's signed 64-bit INTEGER (MAX_INT); a float is finite and
within its range; a str has at most hi characters; a map at most hi keys, nested at most
MAX_MAP_DEPTH deep, of plain values; at most MAX_STAMPS stamps, each with a short stage and four
ns times within 0..MAX_INT. A class names its fields' bounds in `LIMITS` (bus/messages.py); a field
it does not name gets DEFAULT_LIMITS for its type. Encoding repairs text that is not valid
Unicode (lone surrogates: a bad decode, argv under surrogateescape) to U+FFFD instead of failing.
"""

from __future__ import annotations

import dataclasses
import math
import time
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Union


class BadMessage(ValueError):
    """A frame list that is not a valid message; says which field and why."""


MAX_INT = 2**63 - 1  # SQLite's INTEGER is signed 64-bit: no decoded int is past it (ns times fit)
MAX_STR_CHARS = 16_384  # a str field no class bounds more tightly (twice bus/client.py's pieces)
MAX_MAP_KEYS = 256  # a map field (a tap event's detail): keys at its top level
MAX_MAP_DEPTH = 8  # ... and maps / lists nested in it, itself included
MAX_STAMPS = 32  # stamps on one message (one per hop: five or six in the pipeline)
MAX_STAGE_CHARS = 64  # a stamp's stage name
PLAIN_VALUES = (type(None), bool, int, float, str, bytes, list, dict)  # what a map may hold (no ext types)

Limit = tuple[Any, Any]  # (lo, hi): a number's inclusive range; for a str, a map or stamps, (0, most)
DEFAULT_LIMITS: dict[type, Limit] = {
    int: (0, MAX_INT),
    float: (-float(MAX_INT), float(MAX_INT)),
    str: (0, MAX_STR_CHARS),
    bytes: (0, MAX_STR_CHARS),
    dict: (0, MAX_MAP_KEYS),
}


@dataclass(frozen=True, slots=True)
class Stamp:
    """When one stage received a message and when it sent what it made of it (ns)."""

    stage: str
    recv_wall_ns: int
    recv_mono_ns: int
    sent_wall_ns: int
    sent_mono_ns: int

    @property
    def held_ms(self) -> float:
        return (self.sent_mono_ns - self.recv_mono_ns) / 1e6

    def to_wire(self) -> list[Any]:
        return [self.stage, self.recv_wall_ns, self.recv_mono_ns, self.sent_wall_ns, self.sent_mono_ns]

    @classmethod
    def from_wire(cls, raw: Any) -> Stamp:
        # Every hop decodes every stamp so far: exact type tests, no generator (bench/bus_hop.py).
        if type(raw) not in (list, tuple) or len(raw) != 5:
            raise BadMessage("stamps: each stamp is a list of 5 items")
        stage, a, b, c, d = raw
        if type(stage) is not str or not (type(a) is type(b) is type(c) is type(d) is int):
            raise BadMessage("stamps: a stamp is [stage: str, 4 x int ns]")
        if not (0 <= a <= MAX_INT and 0 <= b <= MAX_INT and 0 <= c <= MAX_INT and 0 <= d <= MAX_INT):
            raise BadMessage("stamps: a stamp's times are ns within 0..2**63-1")
        if len(stage) > MAX_STAGE_CHARS:
            raise BadMessage(
                f"stamps: a stamp's stage has {len(stage)} characters, more than {MAX_STAGE_CHARS}"
            )
        return _stamp(stage, a, b, c, d)

    @classmethod
    def now(cls, stage: str, recv_wall_ns: int | None = None, recv_mono_ns: int | None = None) -> Stamp:
        wall, mono = time.time_ns(), time.monotonic_ns()
        return _stamp(stage, recv_wall_ns or wall, recv_mono_ns or mono, wall, mono)


Stamps = tuple[Stamp, ...]

# A frozen dataclass's __init__ pays one object.__setattr__ per field; every hop makes a stamp and
# decodes the ones so far, so they are built from their slots' own setters (half the time).
_NEW = object.__new__
_SET_STAGE, _SET_RW, _SET_RM, _SET_SW, _SET_SM = (
    getattr(Stamp, f.name).__set__ for f in dataclasses.fields(Stamp)
)


def _stamp(stage: str, recv_wall_ns: int, recv_mono_ns: int, sent_wall_ns: int, sent_mono_ns: int) -> Stamp:
    stamp = _NEW(Stamp)
    _SET_STAGE(stamp, stage)
    _SET_RW(stamp, recv_wall_ns)
    _SET_RM(stamp, recv_mono_ns)
    _SET_SW(stamp, sent_wall_ns)
    _SET_SM(stamp, sent_mono_ns)
    return stamp


# Field kinds of the precompiled schema: checked by exact type, fast enough for every hop.
PLAIN, FLOAT, DICT, STAMPS, PAYLOAD = range(5)


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    kind: int
    types: tuple[type, ...]  # exact types accepted (bool is not an int here)
    required: bool
    optional: bool  # None accepted
    default: Callable[[], Any]  # the value a header that lacks this (not required) field gets
    set: Callable[[Any, Any], None]  # stores the field on a message made without __init__
    limit: Limit | None = None  # (lo, hi) of a number, (0, most) of a str / map / stamps; None: bool, payload


SCHEMAS: dict[type, tuple[Field, ...]] = {}


def schema(cls: type) -> tuple[Field, ...]:
    schema = SCHEMAS.get(cls)
    if schema is None:
        schema = SCHEMAS[cls] = compile_schema(cls)
    return schema


def compile_schema(cls: type) -> tuple[Field, ...]:
    hints = typing.get_type_hints(cls)
    limits: dict[str, Limit] = getattr(cls, "LIMITS", {})
    if getattr(cls, "__post_init__", None) is not None:  # pragma: no cover - decode skips __init__
        raise RuntimeError(f"{cls.__name__}: decode builds messages without __init__; no __post_init__")
    out = []
    for f in dataclasses.fields(cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        default: Callable[[], Any] = (
            f.default_factory if f.default_factory is not dataclasses.MISSING else _constant(f.default)
        )
        slot = getattr(cls, f.name, None)
        if not isinstance(slot, types.MemberDescriptorType):  # pragma: no cover - not slots=True
            raise RuntimeError(f"{cls.__name__}.{f.name}: message dataclasses must be slots=True")
        hint, optional = hints[f.name], False
        if typing.get_origin(hint) in (Union, types.UnionType):
            args = typing.get_args(hint)
            optional = type(None) in args
            hint = next(a for a in args if a is not type(None))
        accepted: tuple[type, ...]
        if f.name == getattr(cls, "PAYLOAD_FIELD", None):
            kind, accepted, optional = PAYLOAD, (bytes,), False
        elif f.name == "stamps":
            kind, accepted, optional = STAMPS, (list,), False
        elif hint is float:
            kind, accepted = FLOAT, (int, float)
        elif typing.get_origin(hint) is dict:
            kind, accepted = DICT, (dict,)
        elif hint in (bool, int, str, bytes):
            kind, accepted = PLAIN, (hint,)
        else:  # pragma: no cover - a programming error in a dataclass
            raise RuntimeError(f"{cls.__name__}.{f.name}: unsupported annotation {hint!r}")
        limit: Limit | None = None
        if kind == STAMPS:
            limit = (0, MAX_STAMPS)
        elif kind != PAYLOAD and accepted[0] is not bool:
            limit = limits.get(f.name, DEFAULT_LIMITS[accepted[0] if kind != FLOAT else float])
        out.append(Field(f.name, kind, accepted, required, optional, default, slot.__set__, limit))
    return tuple(out)


def _constant(value: Any) -> Callable[[], Any]:
    return lambda: value


MISSING = object()  # a header that lacks the field
Decoder = Callable[[dict[str, Any], bytes | None], Any]
Encoder = Callable[[Any, Stamps], list[bytes]]
DECODERS: dict[type, Decoder] = {}
ENCODERS: dict[type, Encoder] = {}


def decoder(cls: type) -> Decoder:
    """`cls`'s message from a header map and the payload frame (or None), or BadMessage."""
    decode = DECODERS.get(cls)
    if decode is None:
        decode = DECODERS[cls] = compile_decoder(cls)
    return decode


def encoder(cls: type, packer: Callable[[], Any], key_version: str, key_type: str) -> Encoder:
    """`cls`'s frames from a message and the stamps to append: the header map (the envelope's
    keys, then the fields in order, stamps last) packed by `packer()`, then the payload if any."""
    encode = ENCODERS.get(cls)
    if encode is None:
        encode = ENCODERS[cls] = compile_encoder(cls, packer, key_version, key_type)
    return encode


def fast_path(i: int, f: Field) -> str | None:
    """The inline expression a decoder stores for a value `v` of field i, with the test it must pass
    to be stored so (its exact type and range); any other value takes field_value, which stores it
    or says what is wrong. The kinds every hop meets: plain fields, and the stamps."""
    t = f.types[0]
    if f.kind == STAMPS:
        return f"tuple([from_wire(s) for s in v]) if type(v) is list and len(v) <= HI{i}"
    if f.kind != PLAIN:
        return None
    if t is bool:
        return f"v if type(v) is T{i}"
    if t is int:
        return f"v if type(v) is T{i} and LO{i} <= v <= HI{i}"
    return f"v if type(v) is T{i} and len(v) <= HI{i}"  # str, bytes


def compile_decoder(cls: type[Any]) -> Decoder:
    # One statement or two per field, in field order, so the first bad field is the one named,
    # as a loop over the schema would; the same errors, word for word.
    kind: str = cls.TYPE
    env: dict[str, Any] = {"new": object.__new__, "cls": cls, "TYPE": kind, "MISSING": MISSING}
    env.update(BadMessage=BadMessage, field_value=field_value, from_wire=Stamp.from_wire)
    body = ["msg = new(cls)", "get = header.get"]
    for i, f in enumerate(schema(cls)):
        env[f"F{i}"], env[f"set{i}"], env[f"T{i}"] = f, f.set, f.types[0]
        if f.limit is not None:
            env[f"LO{i}"], env[f"HI{i}"] = f.limit
        if f.kind == PAYLOAD:
            env[f"NO_PAYLOAD{i}"] = f"{kind}: missing payload frame ({f.name})"
            body += ["if payload is None:", f"    raise BadMessage(NO_PAYLOAD{i})", f"set{i}(msg, payload)"]
            continue
        body.append(f"v = get({f.name!r}, MISSING)")
        fast = fast_path(i, f)
        if fast is None:
            body.append(f"set{i}(msg, field_value(TYPE, F{i}, v))")
        else:
            body.append(f"set{i}(msg, {fast} else field_value(TYPE, F{i}, v))")
    if cls.PAYLOAD_FIELD is None:
        env["EXTRA_FRAME"] = f"{kind}: carries no payload, got a second frame"
        body += ["if payload is not None:", "    raise BadMessage(EXTRA_FRAME)"]
    body += ["msg.validate()", "return msg"]
    return _compile("decode(header, payload)", body, env)


def compile_encoder(cls: type[Any], packer: Callable[[], Any], key_version: str, key_type: str) -> Encoder:
    # Text that msgpack cannot encode (a lone surrogate) is repaired, and the header packed again:
    # the `try` costs nothing on the way every valid message takes.
    env: dict[str, Any] = {"packer": packer, "KV": key_version, "KT": key_type, "repaired": repaired}
    env.update(V=cls.VERSION, TYPE=cls.TYPE)
    items, payload = ["KV: V", "KT: TYPE"], None
    for f in schema(cls):
        if f.kind == PAYLOAD:
            payload = f.name
        elif f.kind == STAMPS:
            items.append(f"{f.name!r}: [s.to_wire() for s in (*msg.{f.name}, *extra_stamps)]")
        else:
            items.append(f"{f.name!r}: msg.{f.name}")
    pack = f"header = packer().pack({{{', '.join(items)}}})"
    body = ["try:", f"    {pack}", "except UnicodeEncodeError:"]
    body += ["    msg, extra_stamps = repaired(msg, extra_stamps)", f"    {pack}"]
    if payload is None:
        body.append("return [header]")
    else:
        body += [f"payload = msg.{payload}", "return [header] if payload is None else [header, payload]"]
    return _compile("encode(msg, extra_stamps=())", body, env)


def _compile(signature: str, body: list[str], env: dict[str, Any]) -> Any:
    source = f"def {signature}:\n" + "".join(f"    {line}\n" for line in body)
    exec(source, env)  # our own source, made of the dataclass's field names
    return env[signature.split("(")[0]]


def field_value(kind: str, f: Field, value: Any) -> Any:
    """What a message stores for a header's `value` (MISSING: the header lacks it), or BadMessage."""
    if value is MISSING:
        if f.required:
            raise BadMessage(f"{kind}: missing field {f.name!r}")
        return f.default()
    return check(kind, f, value)


def check(kind: str, f: Field, value: Any) -> Any:
    """Value if it has the declared type and lies within the field's bounds (stamps converted),
    else BadMessage naming the field and the bound."""
    if type(value) in f.types:
        if f.limit is None:  # a bool, the payload
            return value
        lo, hi = f.limit
        if f.kind == PLAIN and type(value) is int:
            if not lo <= value <= hi:
                raise BadMessage(
                    f"{kind}: field {f.name!r} = {value} is not within {_bound(lo)}..{_bound(hi)}"
                )
            return value
        if f.kind == FLOAT:
            value = float(value)
            if not math.isfinite(value):
                raise BadMessage(f"{kind}: field {f.name!r} = {value!r} is not finite")
            if not lo <= value <= hi:
                raise BadMessage(f"{kind}: field {f.name!r} = {value!r} is not within {lo!r}..{hi!r}")
            return value
        if f.kind == STAMPS:
            if len(value) > hi:
                raise BadMessage(f"stamps: {len(value)} stamps, more than {hi}")
            return tuple([Stamp.from_wire(s) for s in value])
        if f.kind == DICT:
            if not all(type(k) is str for k in value):
                raise BadMessage(f"{kind}: field {f.name!r} must have str keys")
            if len(value) > hi:
                raise BadMessage(f"{kind}: field {f.name!r} has {len(value)} keys, more than {hi}")
            _check_nesting(kind, f.name, value)
            return value
        if len(value) > hi:  # str, bytes
            unit = "characters" if type(value) is str else "bytes"
            raise BadMessage(f"{kind}: field {f.name!r} has {len(value)} {unit}, more than {hi}")
        return value
    if value is None and f.optional:
        return None
    expected = "list of stamps" if f.kind == STAMPS else "/".join(t.__name__ for t in f.types)
    raise BadMessage(f"{kind}: field {f.name!r} must be {expected}, got {type(value).__name__}")


def _bound(n: int) -> str:
    return {MAX_INT: "2**63-1", 2**53 - 1: "2**53-1"}.get(n, str(n))


def _check_nesting(kind: str, name: str, value: dict[str, Any]) -> None:
    """A map of plain values (no msgpack ext types), nested at most MAX_MAP_DEPTH deep, or
    BadMessage; walked without recursion, so no depth msgpack accepts can overflow the stack."""
    stack: list[tuple[Any, int]] = [(value, MAX_MAP_DEPTH)]
    while stack:
        obj, left = stack.pop()
        t = type(obj)
        if t is dict or t is list:
            if not left:
                raise BadMessage(f"{kind}: field {name!r} nests deeper than {MAX_MAP_DEPTH}")
            stack.extend((x, left - 1) for x in (obj.values() if t is dict else obj))
        elif t not in PLAIN_VALUES:
            raise BadMessage(f"{kind}: field {name!r} holds a {t.__name__}, not a plain value")


# ---- repair at encode ----------------------------------------------------------------------------
def repair_text(text: str) -> str:
    """Text that encodes as UTF-8: surrogate pairs joined, every lone surrogate replaced by U+FFFD
    (a lone surrogate comes from argv or stdin under surrogateescape, or a bad decode)."""
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def repair_value(value: Any) -> Any:
    """`value` with every str in it (map keys too, any depth) repaired."""
    if isinstance(value, str):
        return repair_text(value)
    if isinstance(value, dict):
        return {repair_value(k): repair_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [repair_value(v) for v in value]
    return value


def _repair_stamp(stamp: Stamp) -> Stamp:
    return dataclasses.replace(stamp, stage=repair_text(stamp.stage))


def repaired(msg: Any, extra_stamps: Stamps) -> tuple[Any, Stamps]:
    """A message (and the stamps to append) whose text all encodes: what an encoder packs after
    msgpack refused a lone surrogate. Only that rare path pays for the copy."""
    changes: dict[str, Any] = {}
    for f in schema(type(msg)):
        value = getattr(msg, f.name)
        if f.kind == STAMPS:
            changes[f.name] = tuple(_repair_stamp(s) for s in value)
        elif f.kind in (PLAIN, DICT) and value is not None:
            changes[f.name] = repair_value(value)
    return dataclasses.replace(msg, **changes), tuple(_repair_stamp(s) for s in extra_stamps)
