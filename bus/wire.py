"""The wire's building blocks under bus/messages.py: the one error type, stage stamps, and the
per-type field schemas that `decode` checks every header against.

A schema is compiled once per message class from its dataclass fields and type hints; checking a
field is then one exact-type test (bool is not an int here), fast enough for every hop. From the
schema, each class also gets its decoder and encoder as straight-line code (the way dataclasses
makes __init__): every hop decodes one message and encodes one, and a loop over the schema asking
each field's kind cost about as much as the msgpack work itself (bench/bus_hop.py).
"""

from __future__ import annotations

import dataclasses
import time
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Union


class BadMessage(ValueError):
    """A frame list that is not a valid message; says which field and why."""


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


SCHEMAS: dict[type, tuple[Field, ...]] = {}


def schema(cls: type) -> tuple[Field, ...]:
    schema = SCHEMAS.get(cls)
    if schema is None:
        schema = SCHEMAS[cls] = compile_schema(cls)
    return schema


def compile_schema(cls: type) -> tuple[Field, ...]:
    hints = typing.get_type_hints(cls)
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
        out.append(Field(f.name, kind, accepted, required, optional, default, slot.__set__))
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


# What a decoder stores for a value `v` of its field's exact type, inline; other kinds and values
# take field_value. The two kinds every hop meets: plain fields as they are, and the stamps.
FAST_PATHS = {PLAIN: "v", STAMPS: "tuple([from_wire(s) for s in v])"}


def compile_decoder(cls: type[Any]) -> Decoder:
    # One statement or two per field, in field order, so the first bad field is the one named,
    # as a loop over the schema would; the same errors, word for word.
    kind: str = cls.TYPE
    env: dict[str, Any] = {"new": object.__new__, "cls": cls, "TYPE": kind, "MISSING": MISSING}
    env.update(BadMessage=BadMessage, field_value=field_value, from_wire=Stamp.from_wire)
    body = ["msg = new(cls)", "get = header.get"]
    for i, f in enumerate(schema(cls)):
        env[f"F{i}"], env[f"set{i}"], env[f"T{i}"] = f, f.set, f.types[0]
        if f.kind == PAYLOAD:
            env[f"NO_PAYLOAD{i}"] = f"{kind}: missing payload frame ({f.name})"
            body += ["if payload is None:", f"    raise BadMessage(NO_PAYLOAD{i})", f"set{i}(msg, payload)"]
            continue
        body.append(f"v = get({f.name!r}, MISSING)")
        fast = FAST_PATHS.get(f.kind)
        if fast is None:
            body.append(f"set{i}(msg, field_value(TYPE, F{i}, v))")
        else:
            body.append(f"set{i}(msg, {fast} if type(v) is T{i} else field_value(TYPE, F{i}, v))")
    if cls.PAYLOAD_FIELD is None:
        env["EXTRA_FRAME"] = f"{kind}: carries no payload, got a second frame"
        body += ["if payload is not None:", "    raise BadMessage(EXTRA_FRAME)"]
    body += ["msg.validate()", "return msg"]
    return _compile("decode(header, payload)", body, env)


def compile_encoder(cls: type[Any], packer: Callable[[], Any], key_version: str, key_type: str) -> Encoder:
    env: dict[str, Any] = {"packer": packer, "KV": key_version, "KT": key_type}
    env.update(V=cls.VERSION, TYPE=cls.TYPE)
    items, payload = ["KV: V", "KT: TYPE"], None
    for f in schema(cls):
        if f.kind == PAYLOAD:
            payload = f.name
        elif f.kind == STAMPS:
            items.append(f"{f.name!r}: [s.to_wire() for s in (*msg.{f.name}, *extra_stamps)]")
        else:
            items.append(f"{f.name!r}: msg.{f.name}")
    body = [f"header = packer().pack({{{', '.join(items)}}})"]
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
    """Value if it has the declared type (stamps converted), else BadMessage."""
    if type(value) in f.types:
        if f.kind == PLAIN:
            return value
        if f.kind == STAMPS:
            return tuple([Stamp.from_wire(s) for s in value])
        if f.kind == FLOAT:
            return float(value)
        if f.kind == DICT and not all(type(k) is str for k in value):
            raise BadMessage(f"{kind}: field {f.name!r} must have str keys")
        return value
    if value is None and f.optional:
        return None
    expected = "list of stamps" if f.kind == STAMPS else "/".join(t.__name__ for t in f.types)
    raise BadMessage(f"{kind}: field {f.name!r} must be {expected}, got {type(value).__name__}")
