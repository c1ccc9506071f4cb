"""Decoding into declared shapes (msgspec Structs) with errors a person can act on.

msgspec checks a value against its declaration in one pass and names the JSON path of the first
problem (`$.rules[3].severity`). This module adds what the path alone does not say: which entry
that is (its `id`, or its key in an object), the allowed values of an enum, and the name a
constrained string stands for (a `Meta(title=...)`, e.g. "bad RxCUI '12ab'"). Cross-field rules
(a rule naming an unknown class) are not shapes: their owners check them after decoding.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

import msgspec
import msgspec.inspect as mi

from cds.runtime.errors import ServiceLoadError

T = TypeVar("T")

_AT = re.compile(r"^(?P<msg>.*?)(?: - at (?P<key>`key` in )?`(?P<path>\$[^`]*)`)?$", re.S)
_SEGMENT = re.compile(r"\.([^.\[]+)|\[(\d+)\]|\[\.\.\.\]")
NOT_BLANK = r"\S"  # the pattern of a required, non-blank text


class ShapeError(ValueError):
    """A value that does not match its declaration; `entry` names the innermost entry, if any."""

    def __init__(self, problem: str, path: str = "$", entry: str | None = None) -> None:
        self.problem, self.path, self.entry = problem, path, entry
        where = f"{entry}: " if entry else ""
        at = f" (at {path})" if path != "$" else ""
        super().__init__(f"{where}{problem}{at}")


def convert(obj: Any, type_: type[T], *, strict: bool = True) -> T:
    """`obj` (decoded JSON, TOML, ...) as `type_`, or ShapeError naming the entry and field."""
    try:
        return msgspec.convert(obj, type_, strict=strict)
    except msgspec.ValidationError as e:
        raise explain(e, obj, type_) from None


def decode_json(data: bytes | str, type_: type[T]) -> T:
    """JSON text as `type_`; ShapeError for bad JSON ("not valid JSON (...)") or a bad shape."""
    try:
        return msgspec.json.decode(data, type=type_)
    except msgspec.ValidationError as e:
        raise explain(e, msgspec.json.decode(data), type_) from None
    except msgspec.DecodeError as e:
        raise ShapeError(f"not valid JSON ({e})") from None


def checked_json(path: Path, shape: Any, check: Callable[[Any], None] | None = None) -> Any:
    """A JSON file's data, as plain Python, once it fits `shape` and passes `check` (the rules
    between fields); ShapeError whose message starts with the file's name otherwise."""
    try:
        data = path.read_bytes()
        raw = msgspec.json.decode(data)
    except (OSError, msgspec.DecodeError) as e:
        raise ShapeError(f"{path.name}: cannot be read ({e})") from None
    try:
        decoded = convert(raw, shape)
        if check is not None:
            check(decoded)
    except ShapeError as e:
        raise ShapeError(f"{path.name}: {e}") from None
    return raw


def knowledge_json(path: Path, shape: Any, check: Callable[[Any], None] | None = None) -> dict[str, Any]:
    """A service's knowledge file as data, once it fits `shape` (and `check`); ServiceLoadError
    naming the file otherwise (the service does not start)."""
    try:
        data: dict[str, Any] = checked_json(path, shape, check)
    except ShapeError as e:
        raise ServiceLoadError(str(e)) from None
    return data


def explain(error: msgspec.ValidationError, raw: Any, type_: Any) -> ShapeError:
    """A ShapeError for msgspec's error on `raw`: entry ids (or names) and keys, enum values and
    titles filled in."""
    m = _AT.match(str(error))
    assert m is not None
    msg, path = m.group("msg"), m.group("path") or "$"
    typ: Any = type_
    entries: list[str] = []  # the ids and keys of the entries on the way, outermost first
    last: str | None = None
    out_path = "$"
    for seg in _SEGMENT.finditer(path[1:]):
        field, index = seg.group(1), seg.group(2)
        typ = _container(typ, raw)
        if field is not None:
            fields = msgspec.structs.fields(typ) if _is_struct(typ) else ()
            typ = next((f.type for f in fields if f.encode_name == field), Any)
            raw = raw.get(field) if isinstance(raw, dict) else None
            last, out_path = field, f"{out_path}.{field}"
        elif index is not None:
            args = get_args(typ)
            typ = args[0] if args else Any
            raw = raw[int(index)] if isinstance(raw, list) and int(index) < len(raw) else None
            last = f"{last}[{index}]" if last else None
            out_path = f"{out_path}[{index}]"
            label = (
                next((raw[k] for k in ("id", "name") if isinstance(raw.get(k), str)), None)
                if isinstance(raw, dict)
                else None
            )
            if label:  # a list entry is named by its id (or name)
                entries.append(label)
        else:  # a value in an object keyed by id: msgspec does not say which; find the first bad one
            args = get_args(typ)
            typ = args[1] if len(args) == 2 else Any
            key = _first_bad_key(raw, typ) if isinstance(raw, dict) else None
            raw, last = (raw.get(key) if key is not None else None), None
            entries += [key] if key is not None else []
            out_path = f"{out_path}[{key!r}]" if key is not None else f"{out_path}[...]"
    if m.group("key"):  # a bad key of an object: its key type, and the first key that is not one
        args = get_args(_container(typ, raw))
        typ = args[0] if len(args) == 2 else Any
        raw = next((k for k in raw or () if not _converts(k, typ)), None) if isinstance(raw, dict) else None
        last = f"key of {last}" if last else "key"
    problem = _problem(msg, *_unwrap(mi.type_info(typ), raw), last, raw)
    return ShapeError(problem, out_path, " ".join(entries) or None)


def _is_struct(typ: Any) -> bool:
    return isinstance(typ, type) and issubclass(typ, msgspec.Struct)


def _container(typ: Any, raw: Any) -> Any:
    """The declared type to walk into: through Annotated and Optional/unions to what `raw` is."""
    while True:
        origin = get_origin(typ)
        if origin is Annotated:
            typ = get_args(typ)[0]
        elif origin in (Union, UnionType):
            kinds = [t for t in get_args(typ) if t is not type(None)]
            typ = next((t for t in kinds if _fits(t, raw)), kinds[0] if kinds else Any)
        else:
            return typ


def _fits(typ: Any, raw: Any) -> bool:
    typ = _container(typ, raw)
    origin = get_origin(typ) or typ
    if isinstance(raw, dict):
        return _is_struct(typ) or origin is dict
    if isinstance(raw, list):
        return origin in (list, tuple, set, frozenset)
    return True


def _first_bad_key(raw: dict[str, Any], value_type: Any) -> str | None:
    return next((str(k) for k, v in raw.items() if not _converts(v, value_type)), None)


def _converts(value: Any, typ: Any) -> bool:
    try:
        msgspec.convert(value, typ)
    except msgspec.ValidationError:
        return False
    return True


def _unwrap(info: Any, raw: Any) -> tuple[Any, str | None]:
    """The declared type through Optional/unions and annotations, with the title met on the way."""
    title = None
    while True:
        if isinstance(info, mi.Metadata):
            title = (info.extra_json_schema or {}).get("title") or title
            info = info.type
        elif isinstance(info, mi.UnionType):
            kinds = [t for t in info.types if not isinstance(t, mi.NoneType)]
            info = kinds[0] if len(kinds) == 1 else mi.AnyType() if not kinds else _pick(kinds, raw)
        else:
            return info, title


def _pick(kinds: list[Any], raw: Any) -> Any:
    """Of a union's members, the one `raw` was meant as (a string for a Literal or str, ...)."""
    for k in kinds:
        inner = k.type if isinstance(k, mi.Metadata) else k
        if isinstance(raw, str) and isinstance(inner, mi.LiteralType | mi.StrType):
            return k
        if isinstance(raw, dict) and isinstance(inner, mi.StructType | mi.DictType):
            return k
        if isinstance(raw, list) and isinstance(inner, mi.ListType | mi.TupleType):
            return k
    return kinds[0]


def _problem(msg: str, info: Any, title: str | None, last: str | None, raw: Any) -> str:
    if msg.startswith("Object "):  # about the object itself (a missing or unknown field)
        doc = (info.cls.__doc__ or "").strip().split("\n")[0] if isinstance(info, mi.StructType) else ""
        return msg[0].lower() + msg[1:] + (f" ({doc})" if doc else "")
    if msg.startswith("Invalid enum value") and isinstance(info, mi.LiteralType | mi.EnumType):
        values = [
            str(v) for v in (info.values if isinstance(info, mi.LiteralType) else [m.value for m in info.cls])
        ]
        choices = " or ".join(filter(None, (", ".join(values[:-1]), values[-1])))
        name = last or "the value"
        return f"{name} {raw!r} is not allowed; {name} must be {choices}"
    if "matching regex" in msg:
        if f"'{NOT_BLANK}'" in msg.replace("\\\\", "\\"):
            return f"missing {last or 'text'}: it must not be blank"
        if title:
            return f"bad {title} {raw!r}"
    return f"'{last}': {msg}" if last else msg[0].lower() + msg[1:]
