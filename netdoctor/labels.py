"""Kubernetes label selectors: parsing and matching, shared by every stage that selects pods.

Used by the policy engine, the lab's controllers and policy enforcement, and the check's resolve
stage (selector vs pod labels, nearest miss). Pure functions over plain label mappings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


class SelectorError(ValueError):
    """A selector that Kubernetes would reject."""


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # one of OPERATORS
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.operator == "In":
            return present and labels[self.key] in self.values
        if self.operator == "NotIn":
            return not present or labels[self.key] not in self.values
        if self.operator == "Exists":
            return present
        return not present

    def __str__(self) -> str:
        if self.operator == "In" and len(self.values) == 1:
            return f"{self.key}={next(iter(self.values))}"
        if self.operator == "Exists":
            return self.key
        if self.operator == "DoesNotExist":
            return f"!{self.key}"
        return f"{self.key} {self.operator.lower()} ({','.join(sorted(self.values))})"


@dataclass(frozen=True)
class Selector:
    """A LabelSelector. An empty selector matches everything; `nothing` matches nothing."""

    requirements: tuple[Requirement, ...] = ()
    nothing: bool = False

    def matches(self, labels: Mapping[str, str]) -> bool:
        return not self.nothing and all(r.matches(labels) for r in self.requirements)

    @property
    def is_empty(self) -> bool:
        return not self.nothing and not self.requirements

    def misses(self, labels: Mapping[str, str]) -> tuple[Requirement, ...]:
        """The requirements these labels fail: the 'nearest miss' when there is one."""
        return tuple(r for r in self.requirements if not r.matches(labels))

    def __str__(self) -> str:
        if self.nothing:
            return "<nothing>"
        return ",".join(str(r) for r in self.requirements) or "<everything>"


def from_label_selector(spec: Mapping | None) -> Selector:
    """A metav1.LabelSelector (matchLabels + matchExpressions) as a Selector; None matches all."""
    if spec is None:
        return Selector()
    reqs = [Requirement(k, "In", frozenset([str(v)])) for k, v in (spec.get("matchLabels") or {}).items()]
    for expr in spec.get("matchExpressions") or []:
        op, values = expr.get("operator"), frozenset(str(v) for v in expr.get("values") or [])
        if op not in OPERATORS:
            raise SelectorError(f"unknown selector operator {op!r}")
        if op in ("In", "NotIn") and not values:
            raise SelectorError(f"operator {op} on {expr.get('key')!r} needs values")
        if op in ("Exists", "DoesNotExist") and values:
            raise SelectorError(f"operator {op} on {expr.get('key')!r} takes no values")
        reqs.append(Requirement(str(expr.get("key")), op, values))
    return Selector(tuple(reqs))


def from_match_labels(labels: Mapping[str, str] | None) -> Selector:
    """A Service-style selector: a plain map. An empty or missing map selects nothing."""
    if not labels:
        return Selector(nothing=True)
    return Selector(tuple(Requirement(k, "In", frozenset([str(v)])) for k, v in labels.items()))


_TERM = re.compile(
    r"^\s*(?P<neg>!)?\s*(?P<key>[A-Za-z0-9_./-]+)\s*"
    r"(?:(?P<op>==|=|!=|\s+in\s+|\s+notin\s+)\s*(?P<value>\([^)]*\)|[A-Za-z0-9_.-]*))?\s*$"
)


def parse(text: str) -> Selector:
    """The `-l` / `labelSelector=` string syntax: `a=b,c!=d,e in (f,g),h,!i`."""
    if not text or not text.strip():
        return Selector()
    reqs = []
    for term in _split_terms(text):
        m = _TERM.match(term)
        if not m:
            raise SelectorError(f"invalid label selector term {term!r}")
        key, op, value, neg = m["key"], (m["op"] or "").strip(), m["value"], m["neg"]
        if neg:
            if op:
                raise SelectorError(f"invalid label selector term {term!r}")
            reqs.append(Requirement(key, "DoesNotExist"))
        elif not op:
            reqs.append(Requirement(key, "Exists"))
        elif op in ("=", "=="):
            reqs.append(Requirement(key, "In", frozenset([value])))
        elif op == "!=":
            reqs.append(Requirement(key, "NotIn", frozenset([value])))
        else:
            values = frozenset(v.strip() for v in value.strip("()").split(",") if v.strip())
            reqs.append(Requirement(key, "In" if op == "in" else "NotIn", values))
    return Selector(tuple(reqs))


def _split_terms(text: str) -> list[str]:
    terms, depth, current = [], 0, ""
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += ch
    terms.append(current)
    return terms
