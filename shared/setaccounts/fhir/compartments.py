"""Which R4 compartments (`Patient/1`, `Practitioner/9`, ...) a resource belongs to, from the generated table.

The table (compartment_table.json, built by scripts/generate_compartments.py) holds FHIRPath expressions per
compartment and resource type. This module compiles the small FHIRPath subset they use into closures once,
at import: an expression outside that subset raises ExpressionError then, never a silent miss later.

Supported: member paths through objects and arrays (arrays flatten), `|` unions, parentheses,
`.where(resolve() is Type)`, `.ofType(Reference)`, `.as(Reference)` and `X as Reference`, with choice
elements (`code.ofType(Reference)` reads `codeReference`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, NoReturn

from setaccounts.fhir.references import RESOURCE_TYPES, is_valid_id, load_table, reference_of

Resolver = Callable[[Any], "tuple[str, str] | None"]
Evaluator = Callable[[list[Any], Resolver], list[Any]]

_TOKEN = re.compile(r"\s*(?:([A-Za-z_][A-Za-z0-9_]*)|(\S))")
_TYPE_FILTERABLE = frozenset({"Reference"})


class ExpressionError(ValueError):
    """An expression outside the supported FHIRPath subset; raised while compiling, i.e. at import."""


# ---------------------------------------------------------------------------------------------------------
# Parsing: expression text -> a small tree
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """`source.name`, or `name` on the input when source is None."""

    source: Node | None
    name: str


@dataclass(frozen=True)
class TypeName:
    """A leading `Observation`: keeps the input resources of that type (FHIRPath's type-named root)."""

    name: str


@dataclass(frozen=True)
class OfType:
    """`ofType(T)`, `as(T)` and `x as T`: these agree on the single-item collections we evaluate."""

    source: Node
    type_name: str


@dataclass(frozen=True)
class WhereResolveIs:
    """`where(resolve() is T)`: keep references whose target type is T."""

    source: Node
    type_name: str


@dataclass(frozen=True)
class Union:
    parts: tuple[Node, ...]


Node = Member | TypeName | OfType | WhereResolveIs | Union


def _tokenize(expression: str) -> list[str]:
    tokens: list[str] = []
    position = 0
    while position < len(expression):
        match = _TOKEN.match(expression, position)
        if match is None:  # only trailing whitespace is left
            break
        tokens.append(match.group(1) or match.group(2))
        position = match.end()
    return tokens


class _Parser:
    """Recursive descent over: union := typed ('|' typed)*; typed := path ('as' Type)?;
    path := primary ('.' invocation)*; primary := '(' union ')' | Identifier."""

    def __init__(self, expression: str) -> None:
        self.expression = expression
        self.tokens = _tokenize(expression)
        self.position = 0

    def parse(self) -> Node:
        node = self.union()
        if self.peek() is not None:
            self.fail(f"unexpected {self.peek()!r}")
        return node

    def fail(self, message: str) -> NoReturn:
        raise ExpressionError(f"{message} in FHIRPath expression {self.expression!r}")

    def peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            self.fail(f"expected {expected or 'a token'}, found {token!r}")
        self.position += 1
        return token

    def identifier(self) -> str:
        token = self.take()
        if not (token[0].isalpha() or token[0] == "_"):
            self.fail(f"expected a name, found {token!r}")
        return token

    def union(self) -> Node:
        parts = [self.typed()]
        while self.peek() == "|":
            self.take("|")
            parts.append(self.typed())
        return parts[0] if len(parts) == 1 else Union(tuple(parts))

    def typed(self) -> Node:
        node = self.path()
        if self.peek() == "as":
            self.take("as")
            node = OfType(node, self.identifier())
        elif self.peek() == "is":
            self.fail("the `is` operator outside where(resolve() is T) is not supported")
        return node

    def path(self) -> Node:
        node = self.primary()
        while self.peek() == ".":
            self.take(".")
            node = self.invocation(node)
        return node

    def primary(self) -> Node:
        if self.peek() == "(":
            self.take("(")
            node = self.union()
            self.take(")")
            return node
        name = self.identifier()
        if self.peek() == "(":
            self.fail(f"function {name}() at the start of a path is not supported")
        return TypeName(name) if name[0].isupper() else Member(None, name)

    def invocation(self, source: Node) -> Node:
        name = self.identifier()
        if self.peek() != "(":
            return Member(source, name)
        self.take("(")
        if name in ("ofType", "as"):
            node: Node = OfType(source, self.identifier())
        elif name == "where":
            for expected in ("resolve", "(", ")", "is"):
                self.take(expected)
            node = WhereResolveIs(source, self.identifier())
        else:
            self.fail(f"function {name}() is not supported")
        self.take(")")
        return node


def parse_expression(expression: str) -> Node:
    return _Parser(expression).parse()


# ---------------------------------------------------------------------------------------------------------
# Compiling: tree -> closures over JSON values
# ---------------------------------------------------------------------------------------------------------


def _children(items: list[Any], name: str) -> list[Any]:
    """`items.name` on JSON: absent keys vanish and arrays flatten, as FHIRPath collections do."""
    out: list[Any] = []
    for item in items:
        if isinstance(item, dict):
            value = item.get(name)
            if isinstance(value, list):
                out.extend(v for v in value if v is not None)
            elif value is not None:
                out.append(value)
    return out


def _is_reference(value: Any) -> bool:
    """JSON carries no type; a Reference is the object with `reference` or a logical `identifier`."""
    return isinstance(value, dict) and ("reference" in value or "identifier" in value)


def _compile_member(node: Member) -> Evaluator:
    name = node.name
    if node.source is None:
        return lambda items, _resolve: _children(items, name)
    source = compile_node(node.source)
    return lambda items, resolve: _children(source(items, resolve), name)


def _compile_type_name(node: TypeName) -> Evaluator:
    name = node.name
    if name not in RESOURCE_TYPES:
        raise ExpressionError(f"{name!r} is not a known resource type")
    return lambda items, _resolve: [i for i in items if isinstance(i, dict) and i.get("resourceType") == name]


def _compile_of_type(node: OfType) -> Evaluator:
    """On a member step this also reads the choice element's typed key (`code` -> `codeReference`)."""
    if node.type_name not in _TYPE_FILTERABLE:
        raise ExpressionError(f"ofType/as {node.type_name} is not supported (only Reference)")
    source = compile_node(node.source)

    def filtered(items: list[Any], resolve: Resolver) -> list[Any]:
        return [value for value in source(items, resolve) if _is_reference(value)]

    if not isinstance(node.source, Member):
        return filtered
    choice = compile_node(Member(node.source.source, node.source.name + node.type_name))
    return lambda items, resolve: filtered(items, resolve) + choice(items, resolve)


def _compile_where(node: WhereResolveIs) -> Evaluator:
    target = node.type_name
    if target not in RESOURCE_TYPES:
        raise ExpressionError(f"resolve() is {target}: not a known resource type")
    source = compile_node(node.source)

    def where(items: list[Any], resolve: Resolver) -> list[Any]:
        kept = []
        for value in source(items, resolve):
            ref = resolve(value)
            if ref is not None and ref[0] == target:
                kept.append(value)
        return kept

    return where


def _compile_union(node: Union) -> Evaluator:
    parts = tuple(compile_node(part) for part in node.parts)

    def union(items: list[Any], resolve: Resolver) -> list[Any]:
        out: list[Any] = []
        for part in parts:
            out.extend(part(items, resolve))
        return out

    return union


def compile_node(node: Node) -> Evaluator:
    if isinstance(node, Member):
        return _compile_member(node)
    if isinstance(node, TypeName):
        return _compile_type_name(node)
    if isinstance(node, OfType):
        return _compile_of_type(node)
    if isinstance(node, WhereResolveIs):
        return _compile_where(node)
    return _compile_union(node)


def compile_expression(expression: str) -> Evaluator:
    """Compile one expression; raises ExpressionError if it leaves the supported subset."""
    return compile_node(parse_expression(expression))


# ---------------------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------------------

_TABLE: dict[str, dict[str, list[dict[str, Any]]]] = load_table()["compartments"]

if "Patient" not in _TABLE:
    raise ExpressionError("compartment table has no Patient compartment")

COMPARTMENT_TYPES: tuple[str, ...] = ("Patient", *sorted(set(_TABLE) - {"Patient"}))
_OWNER_TYPES = frozenset(COMPARTMENT_TYPES)


def _compile_rules() -> dict[str, tuple[tuple[str, Evaluator], ...]]:
    """resource type -> ((compartment type, one evaluator for all its params), ...), built once."""
    rules: dict[str, list[tuple[str, Evaluator]]] = {}
    for compartment in COMPARTMENT_TYPES:
        for resource_type, params in sorted(_TABLE[compartment].items()):
            expressions = [e for param in params for e in param["expressions"]]
            try:
                evaluator = compile_node(Union(tuple(parse_expression(e) for e in expressions)))
            except ExpressionError as error:
                raise ExpressionError(f"{compartment} compartment, {resource_type}: {error}") from error
            rules.setdefault(resource_type, []).append((compartment, evaluator))
    return {resource_type: tuple(entries) for resource_type, entries in rules.items()}


_RULES = _compile_rules()


def compartment_owner_types() -> frozenset[str]:
    """Resource types that own a compartment, and so are each in their own (`Patient/1` in `Patient/1`)."""
    return _OWNER_TYPES


def compartment_resource_types(compartment_type: str) -> tuple[str, ...]:
    """Resource types that can be members through a parameter (the owner type itself is added on top)."""
    return tuple(sorted(_TABLE[compartment_type]))


def compartment_params(compartment_type: str, resource_type: str) -> tuple[str, ...]:
    """Search parameters that put `resource_type` into `compartment_type`, e.g. for a compartment search."""
    return tuple(p["param"] for p in _TABLE[compartment_type].get(resource_type, []))


def _own_key(resource: Mapping[str, Any]) -> str | None:
    resource_type, resource_id = resource.get("resourceType"), resource.get("id")
    if resource_type in _OWNER_TYPES and isinstance(resource_id, str) and is_valid_id(resource_id):
        return f"{resource_type}/{resource_id}"
    return None


def _member_keys(resource: Mapping[str, Any], resolve: Resolver) -> Iterator[str]:
    for compartment, evaluate in _RULES.get(resource.get("resourceType", ""), ()):
        for value in evaluate([resource], resolve):
            ref = resolve(value)
            if ref is not None and ref[0] == compartment:
                yield f"{compartment}/{ref[1]}"


def compartments_of(resource: Mapping[str, Any], urn_map: Mapping[str, str] | None = None) -> list[str]:
    """Sorted, unique compartment keys (`Patient/1`, `Encounter/e1`, ...) that `resource` belongs to.

    A reference counts for compartment C only if it names a resource of type C; contained and unresolvable
    references count for none. `urn_map` resolves `urn:uuid:` references (as in a transaction bundle).
    """
    resolve: Resolver = partial(reference_of, urn_map=urn_map) if urn_map else reference_of
    keys = set(_member_keys(resource, resolve))
    own = _own_key(resource)
    if own is not None:
        keys.add(own)
    return sorted(keys)
