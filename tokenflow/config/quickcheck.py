"""A cheap JSON Schema check that can only say "certainly valid", so jsonschema stays off the
common path.

Importing jsonschema (with referencing, attrs, rpds and the format checkers) costs more than
the rest of a renewal from the CLI put together, and nearly every config file is valid. So the
loader first asks :func:`conforms`: ``True`` means *data* is valid under *schema* exactly as
``jsonschema.Draft202012Validator(schema)`` would judge it, and jsonschema is never imported.
``False`` means "invalid, or not sure": the loader then runs jsonschema, which finds the same
answer it always did and the precise ``FILE:LINE:COL`` messages.

It knows the part of JSON Schema 2020-12 the project's schemas and the built-in plugins' option
schemas use, and only that: ``type``, ``properties``, ``additionalProperties``, ``required``,
``enum``, ``const``, ``pattern``, the numeric bounds, the length, item and property counts,
``items``, ``oneOf``, ``anyOf``, ``not``, ``propertyNames`` and ``$ref`` to ``#/$defs/NAME``; ``description``,
``title``, ``$comment``, ``default`` and ``examples`` are annotations, and ``$schema``, ``$id``
are allowed at the root. Any other keyword, a keyword value of an unexpected shape, a value of
a type YAML can produce but JSON cannot (a date, bytes, a set) or a reference it cannot follow
makes it unsure, and unsure is never "valid". :func:`verdict` exposes the three-way answer for
the tests that compare it with jsonschema.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Final

__all__ = ["conforms", "verdict"]

DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
MAX_DEPTH: Final = 100  # schema levels followed (``$ref`` included) before giving up
_INSTANCE_TYPES: Final = frozenset({dict, list, str, int, float, bool, type(None)})
_ANNOTATIONS: Final = frozenset({"description", "title", "$comment", "default", "examples",
                                 "$defs"})
_ROOT_ONLY: Final = frozenset({"$schema", "$id"})
_REF_PREFIX: Final = "#/$defs/"


class _Unsure(Exception):
    """Raised wherever the answer would depend on something this module does not model."""


def conforms(data: Any, schema: Mapping[str, Any] | bool) -> bool:
    """Whether *data* is certainly valid under *schema* (``False``: invalid or not sure)."""
    return verdict(data, schema) is True


def verdict(data: Any, schema: Mapping[str, Any] | bool) -> bool | None:
    """``True`` valid, ``False`` invalid (both exactly as jsonschema judges), ``None`` unsure."""
    try:
        return _Checker(schema).check(data, schema, 0)
    except (_Unsure, RecursionError):
        return None


def _is_number(value: Any) -> bool:
    return type(value) is int or type(value) is float


def _type_matches(instance: Any, name: Any) -> bool:
    kind = type(instance)
    if name == "object":
        return kind is dict
    if name == "array":
        return kind is list
    if name == "string":
        return kind is str
    if name == "boolean":
        return kind is bool
    if name == "null":
        return instance is None
    if name == "number":
        return kind is int or kind is float
    if name == "integer":
        return kind is int or (kind is float and instance.is_integer())
    raise _Unsure  # jsonschema raises UnknownType here


def _equal(one: Any, two: Any) -> bool:
    """jsonschema's ``equal`` for scalars (``True`` is not ``1``); containers make us unsure."""
    if one is two:
        return True
    if isinstance(one, str) or isinstance(two, str):
        return bool(one == two)
    kinds = (type(one), type(two))
    if not all(kind in (int, float, bool, type(None)) for kind in kinds):
        raise _Unsure
    if bool in kinds or one is None or two is None:
        return kinds[0] is kinds[1] and one == two
    return bool(one == two)


def _count(value: Any) -> int:
    if type(value) is not int or value < 0:
        raise _Unsure
    return value


def _bound(value: Any) -> int | float:
    if not _is_number(value):
        raise _Unsure
    number: int | float = value
    return number


class _Checker:
    """One validation against one root schema (the root is where ``#/$defs/...`` points)."""

    def __init__(self, root: Mapping[str, Any] | bool) -> None:
        self.root = root

    def check(self, instance: Any, schema: Any, depth: int) -> bool:
        if schema is True:
            return True
        if schema is False:
            return False
        if type(schema) is not dict or depth > MAX_DEPTH:
            raise _Unsure
        if type(instance) not in _INSTANCE_TYPES:
            raise _Unsure
        # every keyword must be known before any is applied: an unknown one (patternProperties,
        # prefixItems, $anchor...) could change what the known ones mean
        for key in schema:
            if key not in _KEYWORDS and key not in _ANNOTATIONS and not (
                    depth == 0 and key in _ROOT_ONLY):
                raise _Unsure
        if depth == 0 and schema.get("$schema", DIALECT) != DIALECT:
            raise _Unsure  # another draft's rules
        for key, value in schema.items():
            keyword = _KEYWORDS.get(key)
            if keyword is not None and not keyword(self, instance, value, schema, depth):
                return False
        return True

    # -- keywords (each returns whether *instance* satisfies it) ---------------------------------
    def type_(self, instance: Any, value: Any, schema: dict[str, Any], depth: int) -> bool:
        names = [value] if isinstance(value, str) else value
        if type(names) is not list or not names:
            raise _Unsure
        return any([_type_matches(instance, name) for name in names])  # a list: check every name

    def properties(self, instance: Any, value: Any, schema: dict[str, Any], depth: int) -> bool:
        if type(value) is not dict:
            raise _Unsure
        if type(instance) is not dict:
            return True
        return all(self.check(instance[key], sub, depth + 1)
                   for key, sub in value.items() if key in instance)

    def additional(self, instance: Any, value: Any, schema: dict[str, Any], depth: int) -> bool:
        known = schema.get("properties", {})
        if type(known) is not dict or not (value is True or value is False or type(value) is dict):
            raise _Unsure
        if type(instance) is not dict:
            return True
        extras = [key for key in instance if key not in known]
        if value is False:
            return not extras
        return all(self.check(instance[key], value, depth + 1) for key in extras)

    def required(self, instance: Any, value: Any, schema: dict[str, Any], depth: int) -> bool:
        if type(value) is not list or not all(type(key) is str for key in value):
            raise _Unsure
        return type(instance) is not dict or all(key in instance for key in value)

    def enum(self, instance: Any, value: Any, schema: dict[str, Any], depth: int) -> bool:
        if type(value) is not list:
            raise _Unsure
        return any([_equal(each, instance) for each in value])  # a list: judge every member

    def const(self, instance: Any, value: Any, schema: dict[str, Any], depth: int) -> bool:
        return _equal(instance, value)

    def pattern(self, instance: Any, value: Any, schema: dict[str, Any], depth: int) -> bool:
        if type(value) is not str:
            raise _Unsure
        try:
            compiled = re.compile(value)  # re keeps its own cache of compiled patterns
        except re.error:
            raise _Unsure from None
        return type(instance) is not str or compiled.search(instance) is not None

    def minimum(self, instance: Any, value: Any, schema: dict[str, Any], depth: int) -> bool:
        bound = _bound(value)
        return not _is_number(instance) or not instance < bound

    def maximum(self, instance: Any, value: Any, schema: dict[str, Any], depth: int) -> bool:
        bound = _bound(value)
        return not _is_number(instance) or not instance > bound

    def exclusive_minimum(self, instance: Any, value: Any, schema: dict[str, Any],
                          depth: int) -> bool:
        bound = _bound(value)
        return not _is_number(instance) or not instance <= bound

    def exclusive_maximum(self, instance: Any, value: Any, schema: dict[str, Any],
                          depth: int) -> bool:
        bound = _bound(value)
        return not _is_number(instance) or not instance >= bound

    def min_length(self, instance: Any, value: Any, schema: dict[str, Any], depth: int) -> bool:
        limit = _count(value)
        return type(instance) is not str or len(instance) >= limit

    def max_length(self, instance: Any, value: Any, schema: dict[str, Any], depth: int) -> bool:
        limit = _count(value)
        return type(instance) is not str or len(instance) <= limit

    def min_properties(self, instance: Any, value: Any, schema: dict[str, Any],
                       depth: int) -> bool:
        limit = _count(value)
        return type(instance) is not dict or len(instance) >= limit

    def max_properties(self, instance: Any, value: Any, schema: dict[str, Any],
                       depth: int) -> bool:
        limit = _count(value)
        return type(instance) is not dict or len(instance) <= limit

    def min_items(self, instance: Any, value: Any, schema: dict[str, Any], depth: int) -> bool:
        limit = _count(value)
        return type(instance) is not list or len(instance) >= limit

    def max_items(self, instance: Any, value: Any, schema: dict[str, Any], depth: int) -> bool:
        limit = _count(value)
        return type(instance) is not list or len(instance) <= limit

    def items(self, instance: Any, value: Any, schema: dict[str, Any], depth: int) -> bool:
        if not (value is True or value is False or type(value) is dict):
            raise _Unsure
        if type(instance) is not list:
            return True
        return all(self.check(item, value, depth + 1) for item in instance)

    def one_of(self, instance: Any, value: Any, schema: dict[str, Any], depth: int) -> bool:
        if type(value) is not list or not value:
            raise _Unsure
        valid = 0
        for branch in value:
            if self.check(instance, branch, depth + 1):
                valid += 1
                if valid > 1:
                    return False
        return valid == 1

    def any_of(self, instance: Any, value: Any, schema: dict[str, Any], depth: int) -> bool:
        if type(value) is not list or not value:
            raise _Unsure
        return any(self.check(instance, branch, depth + 1) for branch in value)

    def not_(self, instance: Any, value: Any, schema: dict[str, Any], depth: int) -> bool:
        return not self.check(instance, value, depth + 1)

    def property_names(self, instance: Any, value: Any, schema: dict[str, Any],
                       depth: int) -> bool:
        if not (value is True or value is False or type(value) is dict):
            raise _Unsure
        if type(instance) is not dict:
            return True
        return all(self.check(key, value, depth + 1) for key in instance)

    def ref(self, instance: Any, value: Any, schema: dict[str, Any], depth: int) -> bool:
        if type(value) is not str or not value.startswith(_REF_PREFIX):
            raise _Unsure
        name = value[len(_REF_PREFIX):]
        if not name or any(char in name for char in "/~%#"):
            raise _Unsure  # JSON pointer escapes and nested paths are not modelled
        defs = self.root.get("$defs") if isinstance(self.root, dict) else None
        if type(defs) is not dict or name not in defs:
            raise _Unsure
        return self.check(instance, defs[name], depth + 1)


_Keyword = Callable[[_Checker, Any, Any, dict[str, Any], int], bool]
_KEYWORDS: Final[dict[str, _Keyword]] = {
    "type": _Checker.type_,
    "properties": _Checker.properties,
    "additionalProperties": _Checker.additional,
    "required": _Checker.required,
    "enum": _Checker.enum,
    "const": _Checker.const,
    "pattern": _Checker.pattern,
    "minimum": _Checker.minimum,
    "maximum": _Checker.maximum,
    "exclusiveMinimum": _Checker.exclusive_minimum,
    "exclusiveMaximum": _Checker.exclusive_maximum,
    "minLength": _Checker.min_length,
    "maxLength": _Checker.max_length,
    "minProperties": _Checker.min_properties,
    "maxProperties": _Checker.max_properties,
    "minItems": _Checker.min_items,
    "maxItems": _Checker.max_items,
    "items": _Checker.items,
    "oneOf": _Checker.one_of,
    "anyOf": _Checker.any_of,
    "not": _Checker.not_,
    "propertyNames": _Checker.property_names,
    "$ref": _Checker.ref,
}
