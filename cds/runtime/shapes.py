"""Decoding into declared shapes (msgspec Structs) with errors a person can act on.

msgspec checks a value against its declaration in one pass and names the JSON path of the first
problem (`$.rules[3].severity`). This module adds what the path alone does not say: which entry
that is (its `id`, or its key in an object), the allowed values of an enum, and the name a
constrained string stands for (a `Meta(title=...)`, e.g. "bad RxCUI '12ab'"). Cross-field rules
(a rule naming an unknown class) are not shapes: their owners check them after decoding.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec
import msgspec.inspect as mi

T = TypeVar("T")

_AT = re.compile(r"^(?P<msg>.*?)(?: - at `(?P<path>\$[^`]*)`)?$", re.S)
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


def explain(error: msgspec.ValidationError, raw: Any, type_: Any) -> ShapeError:
    """A ShapeError for msgspec's error on `raw`: entry ids, enum values and titles filled in."""
    m = _AT.match(str(error))
    assert m is not None
    msg, path = m.group("msg"), m.group("path") or "$"
    info: Any = mi.type_info(type_)
    entry: str | None = None
    last: str | None = None
    out_path = "$"
    for seg in _SEGMENT.finditer(path[1:]):
        field, index = seg.group(1), seg.group(2)
        info = _container(info, raw)
        if field is not None:
            info = next((f.type for f in getattr(info, "fields", ()) if f.encode_name == field), mi.AnyType())
            raw = raw.get(field) if isinstance(raw, dict) else None
            last, out_path = field, f"{out_path}.{field}"
        elif index is not None:
            info = getattr(info, "item_type", mi.AnyType())
            raw = raw[int(index)] if isinstance(raw, list) and int(index) < len(raw) else None
            last, out_path = None, f"{out_path}[{index}]"
            if isinstance(raw, dict) and isinstance(raw.get("id"), str):
                entry = raw["id"]
        else:  # a value in an object keyed by id: msgspec does not say which; find the first bad one
            value_type = getattr(info, "value_type", mi.AnyType())
            key = _first_bad_key(raw, value_type) if isinstance(raw, dict) else None
            info, raw, last = value_type, (raw.get(key) if key is not None else None), None
            entry, out_path = key, f"{out_path}[{key!r}]" if key is not None else f"{out_path}[...]"
    return ShapeError(_problem(msg, *_unwrap(info, raw), last, raw), out_path, entry)


def _container(info: Any, raw: Any) -> Any:
    """The declared type to walk into: through Optional/unions and titles to the struct/list/dict."""
    return _unwrap(info, raw)[0]


def _unwrap(info: Any, raw: Any) -> tuple[Any, str | None]:
    """The declared type through Optional/unions and annotations, with the title met on the way."""
    title = None
    while True:
        if isinstance(info, mi.Metadata):
            title = (info.extra_json_schema or {}).get("title") or title
            info = info.type
        elif isinstance(info, mi.UnionType):
            kinds = [t for t in info.types if not isinstance(t, mi.NoneType)]
            match = [t for t in kinds if _fits(t, raw)]
            info = (match or kinds or [mi.AnyType()])[0]
        else:
            return info, title


def _fits(info: Any, raw: Any) -> bool:
    if isinstance(info, mi.Metadata):
        info = info.type
    if isinstance(raw, dict):
        return isinstance(info, mi.StructType | mi.DictType)
    if isinstance(raw, list):
        return isinstance(info, mi.ListType | mi.TupleType | mi.VarTupleType | mi.SetType | mi.FrozenSetType)
    return True


def _first_bad_key(raw: dict[str, Any], value_type: Any) -> str | None:
    for key, value in raw.items():
        try:
            msgspec.convert(value, _python_type(value_type))
        except msgspec.ValidationError:
            return str(key)
        except TypeError:
            return None
    return None


def _python_type(info: Any) -> Any:
    info = info.type if isinstance(info, mi.Metadata) else info
    if isinstance(info, mi.StructType):
        return info.cls
    raise TypeError("only entries declared as Structs are located")


def _problem(msg: str, info: Any, title: str | None, last: str | None, raw: Any) -> str:
    name = f"'{last}'" if last else "the value"
    if msg.startswith("Invalid enum value") and isinstance(info, mi.LiteralType | mi.EnumType):
        values = info.values if isinstance(info, mi.LiteralType) else [m.value for m in info.cls]
        return f"{last or 'value'} {raw!r} is not one of {', '.join(map(str, values))}"
    if "matching regex" in msg:
        if f"'{NOT_BLANK}'" in msg.replace("\\\\", "\\"):
            return f"missing {last or 'text'}: it must not be blank"
        if title:
            return f"bad {title} {raw!r}"
    return f"{name}: {msg}" if last else msg[0].lower() + msg[1:]
