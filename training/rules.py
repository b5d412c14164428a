"""Rules found in the training rows, or declared with --rule (issue 30): relations between columns that every
training row holds and that the columns' ranges alone do not imply, stored in the manifest (core/manifest.py's
`Rule`) and held in every generated row (core/rules.py).

Found, each on the training rows where its columns are all present (at least MIN_SUPPORT of them):
- `order`, A <= B (A < B where no row has them equal), between two numeric columns or two date/time columns
  of one kind, where A's largest value is above B's smallest (else the ranges imply it); a rule implied by two
  others through a column that is present wherever both are (A <= B <= C: A <= C) is left out;
- `equal`, B is A (both orders hold);
- `sum`, A + B = C, exact at the data's decimals;
- `fixed`, B fixed by A (a category, or the label): each of A's values seen with one of B's only, B taking
  at least two values, and A's values seen MIN_ROWS_PER_VALUE times on average (else a rare category's one
  row fixes everything about it by chance).
`violations` counts what a table (training rows, or generated ones) breaks: the benchmark's figure.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from core.manifest import Column, Rule
from core.table import category_key
from training.datasets import DataError
from training.tables import TEMPORAL_KINDS, temporal_seconds

MIN_SUPPORT = 30  # training rows a rule is found on, at least
MIN_ROWS_PER_VALUE = 5  # a fixed rule's determining values are seen this often on average
MAX_SUM_COLUMNS = 60  # sums are looked for among at most this many numeric columns (k^3 triples)
_SUM_SAMPLE = 64
NUMERIC_KINDS = ("continuous", "integer")
DISCRETE_KINDS = ("categorical", "boolean")
_RULE = re.compile(r"^\s*(?P<a>.+?)\s*(?P<op><=|>=|<|>|->|=)\s*(?P<b>.+?)\s*$")


Labels = tuple[str, pd.Series] | None  # the label column's name and its values (category keys), where rules may name it


def column_values(frame: pd.DataFrame, columns: Sequence[Column], labels: Labels = None) -> dict[str, pd.Series]:
    """Per column what rules compare: numbers (a date's or time's seconds) as floats, categories by their
    keys (`category_key`), NaN or None where missing; the label too where given."""
    values: dict[str, pd.Series] = {}
    for column in columns:
        series = frame[column.name]
        if column.kind in NUMERIC_KINDS:
            values[column.name] = pd.to_numeric(series, errors="coerce").astype(float)
        elif column.kind in TEMPORAL_KINDS:
            values[column.name] = pd.Series(temporal_seconds(series, column), index=frame.index)
        elif column.kind in DISCRETE_KINDS:
            values[column.name] = series.map(lambda v: None if _missing(v) else category_key(v), na_action=None)
    if labels is not None:
        values[labels[0]] = pd.Series(labels[1].to_numpy(), index=frame.index).map(category_key)
    return values


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA or value == ""


def violations(rule: Rule, values: dict[str, pd.Series]) -> pd.Series:
    """Which rows break `rule` (False where one of its columns is missing)."""
    a, b, *rest = rule.columns
    x, y = values[a], values[b]
    if rule.kind == "order":
        return (x >= y) if rule.strict else (x > y)  # NaN compares False
    if rule.kind == "equal":
        return x.notna() & y.notna() & (x != y)
    if rule.kind == "sum":
        t = values[rest[0]]
        return (x + y - t).abs() > _tolerance(t)
    wanted = {category_key(p): category_key(q) for p, q in rule.pairs or []}
    if y.dtype.kind == "f":  # a number fixed by a category
        target = x.map(lambda v: float(wanted[v]) if v in wanted else np.nan)
        return target.notna() & y.notna() & ((target - y).abs() > _tolerance(y))
    target = x.map(lambda v: wanted.get(v))
    return target.notna() & y.notna() & (target != y)


def _tolerance(t: pd.Series) -> pd.Series:
    return 1e-6 * np.maximum(1.0, t.abs())


def _kinds(columns: Sequence[Column], labels: Labels) -> dict[str, str]:
    return {c.name: c.kind for c in columns} | ({labels[0]: "label"} if labels is not None else {})


def _group(kind: str) -> str | None:
    """What a column's values compare with: numbers with numbers, dates and timestamps with each other (as
    seconds), times of day with times of day."""
    if kind in NUMERIC_KINDS:
        return "number"
    return "time" if kind == "time" else "date" if kind in TEMPORAL_KINDS else None


def discover(columns: Sequence[Column], frame: pd.DataFrame, labels: Labels = None) -> list[Rule]:
    """The rules every training row holds (module docstring), found in `frame` (the training split)."""
    values = column_values(frame, columns, labels)
    kinds = _kinds(columns, labels)
    label = None if labels is None else labels[0]
    orders, equals = _orders(values, kinds)
    sums = _sums(values, [c.name for c in columns if c.kind in NUMERIC_KINDS])
    fixed = _fixed(values, kinds, label)
    # an order a sum makes (A + B = C with B never negative, and present wherever A and C are: A <= C) needs
    # no rule of its own
    made = {
        (s.columns[i], s.columns[2])
        for s in sums
        for i in (0, 1)
        if values[s.columns[1 - i]].min() >= 0 and _present(values, s.columns[1 - i], s.columns[i], s.columns[2])
    }
    orders = [r for r in orders if (r.columns[0], r.columns[1]) not in made]
    return [*fixed, *equals, *sums, *orders]


def _present(values: dict[str, pd.Series], middle: str, a: str, b: str) -> bool:
    """Whether `middle` is present in every row where `a` and `b` are (a rule through it then covers them)."""
    return not values[middle][values[a].notna() & values[b].notna()].isna().any()


def _orders(values: dict[str, pd.Series], kinds: dict[str, str]) -> tuple[list[Rule], list[Rule]]:
    groups: dict[str, list[str]] = {}
    for name, kind in kinds.items():
        group = _group(kind)
        if group is not None:
            groups.setdefault(group, []).append(name)
    held: dict[tuple[str, str], Rule] = {}
    equals: list[Rule] = []
    for names in groups.values():
        for a, b in itertools.permutations(names, 2):
            x, y = values[a], values[b]
            both = x.notna() & y.notna()
            support = int(both.sum())
            if support < MIN_SUPPORT or not (x[both] <= y[both]).all():
                continue
            if (x[both] == y[both]).all():
                if names.index(a) < names.index(b):
                    equals.append(Rule(kind="equal", columns=[a, b], support=support))
                continue
            strict = bool((x[both] < y[both]).all())
            if x.max() < y.min() or (not strict and x.max() == y.min()):  # the ranges alone imply it
                continue
            held[(a, b)] = Rule(kind="order", columns=[a, b], strict=strict, support=support)
    rules = []
    for (a, c), rule in held.items():  # transitive reduction where the middle column is always there
        implied = any(
            (a, b) in held
            and (b, c) in held
            and _present(values, b, a, c)
            and (not rule.strict or held[(a, b)].strict or held[(b, c)].strict)
            for b in values
            if b not in (a, c)
        )
        if not implied:
            rules.append(rule)
    return rules, equals


def _sums(values: dict[str, pd.Series], names: list[str]) -> list[Rule]:
    names = names[:MAX_SUM_COLUMNS]
    if len(names) < 3:
        return []
    x = np.column_stack([values[n].to_numpy(dtype=float) for n in names])
    sample = x[np.linspace(0, len(x) - 1, min(_SUM_SAMPLE, len(x))).astype(int)]
    rules = []
    for k, total in enumerate(names):
        pair = sample[:, :, None] + sample[:, None, :]  # [rows, i, j]
        t = sample[:, k][:, None, None]
        close = np.abs(pair - t) <= 1e-6 * np.maximum(1.0, np.abs(t))
        holds = (close | np.isnan(pair) | np.isnan(t)).all(axis=0)
        for i, j in zip(*np.nonzero(np.triu(holds, 1)), strict=True):
            if k in (i, j):
                continue
            a, b = names[i], names[j]
            both = values[a].notna() & values[b].notna() & values[total].notna()
            support = int(both.sum())
            if support < MIN_SUPPORT:
                continue
            rule = Rule(kind="sum", columns=[a, b, total], support=support)
            if (
                not violations(rule, values)[both].any()
                and (values[a][both] != 0).any()
                and (values[b][both] != 0).any()
            ):
                rules.append(rule)
    return rules


def _fixed(values: dict[str, pd.Series], kinds: dict[str, str], label: str | None) -> list[Rule]:
    determining = [n for n, k in kinds.items() if k in DISCRETE_KINDS or n == label]
    dependent = [n for n, k in kinds.items() if k in DISCRETE_KINDS or k in NUMERIC_KINDS or n == label]
    found: dict[tuple[str, str], Rule] = {}
    for a in determining:
        for b in dependent:
            if a == b:
                continue
            x, y = values[a], values[b]
            both = x.notna() & y.notna()
            support = int(both.sum())
            if support < MIN_SUPPORT:
                continue
            per = pd.DataFrame({"a": x[both], "b": y[both]}).groupby("a", sort=True)["b"]
            if per.nunique().max() != 1 or y[both].nunique() < 2 or support / per.ngroups < MIN_ROWS_PER_VALUE:
                continue
            pairs = [(_plain(k), _plain(v)) for k, v in per.first().items()]
            found[(a, b)] = Rule(kind="fixed", columns=[a, b], pairs=pairs, support=support)
    names = list(kinds)
    rules = []
    for (a, b), rule in found.items():
        if (b, a) in found and (b == label or (a != label and names.index(b) < names.index(a))):
            continue  # one fixes the other both ways: keep one direction (onto the label's column, where one is)
        if any(
            (a, m) in found and (m, b) in found and (m, a) not in found and _present(values, m, a, b)
            for m in names
            if m not in (a, b)
        ):
            continue  # A fixes M, which fixes B (and M is there wherever A and B are)
        rules.append(rule)
    return rules


def _plain(value: object) -> str | int | float | bool:
    if isinstance(value, np.generic):
        return value.item()  # type: ignore[no-any-return]
    return value  # type: ignore[return-value]


def declared(texts: Sequence[str], columns: Sequence[Column], frame: pd.DataFrame, labels: Labels = None) -> list[Rule]:
    """Rules given as text (`A <= B`, `A < B`, `A >= B`, `A = B`, `A + B = C`, `A -> B`), checked on the
    training rows: a rule they break is refused with the rows that break it."""
    values = column_values(frame, columns, labels)
    kinds = _kinds(columns, labels)
    label = None if labels is None else labels[0]
    shown_frame = frame.assign(**{label: values[label]}) if label is not None else frame
    rules = []
    for text in texts:
        rule = _parse(text, kinds, label)
        if rule.kind == "fixed":
            a, b = rule.columns
            both = values[a].notna() & values[b].notna()
            pairs = pd.DataFrame({"a": values[a][both], "b": values[b][both]}).groupby("a", sort=True)["b"]
            many = pairs.nunique()
            if (many > 1).any():
                value = many[many > 1].index[0]
                seen = sorted(map(str, pairs.get_group(value).unique()))[:5]
                raise DataError(f"rule {text!r}: {a} = {value!r} comes with several values of {b} ({', '.join(seen)})")
            rule = rule.model_copy(update={"pairs": [(_plain(k), _plain(v)) for k, v in pairs.first().items()]})
        both = pd.concat([values[c] for c in rule.columns], axis=1).notna().all(axis=1)
        broken = violations(rule, values) & both
        if broken.any():
            rows = shown_frame[rule.columns].loc[broken].head(5)
            shown = "; ".join(", ".join(f"{c}={_plain(row[c])!r}" for c in rule.columns) for _, row in rows.iterrows())
            raise DataError(f"rule {text!r} is broken by {int(broken.sum())} training row(s), e.g. {shown}")
        rules.append(rule.model_copy(update={"support": int(both.sum()), "declared": True}))
    return rules


def _parse(text: str, kinds: dict[str, str], label: str | None) -> Rule:
    allowed = "A <= B, A < B, A >= B, A > B, A = B, A + B = C, A -> B (B fixed by A)"
    found = _RULE.match(text)
    if found is None:
        raise DataError(f"rule {text!r}: not a rule; rules are written {allowed}")
    a, op, b = found["a"], found["op"], found["b"]
    if op == "=" and "+" in a + b:
        total, addends = (a, b) if "+" in b else (b, a)
        names = [n.strip() for n in addends.split("+")]
        if len(names) != 2:
            raise DataError(f"rule {text!r}: a sum adds two columns (A + B = C)")
        columns, kind = [*names, total], "sum"
    else:
        columns = [b, a] if op in (">=", ">") else [a, b]
        kind = {"<=": "order", "<": "order", ">=": "order", ">": "order", "=": "equal", "->": "fixed"}[op]
    if len(set(columns)) != len(columns):
        raise DataError(f"rule {text!r} names a column twice")
    for name in columns:
        if name not in kinds:
            raise DataError(f"rule {text!r} names {name!r}, which is not a modelled column; columns: {sorted(kinds)}")
    numeric = all(kinds[c] in NUMERIC_KINDS for c in columns)
    groups = {_group(kinds[c]) for c in columns}
    if kind in ("order", "equal") and (len(groups) != 1 or None in groups):
        raise DataError(f"rule {text!r}: an order compares two numeric columns, or two dates or times")
    if kind == "sum" and not numeric:
        raise DataError(f"rule {text!r}: a sum adds numeric columns")
    if kind == "fixed" and not (kinds[columns[0]] in DISCRETE_KINDS or columns[0] == label):
        raise DataError(f"rule {text!r}: the column that fixes another is a category (or the label)")
    if kind == "fixed" and kinds[columns[1]] not in (*DISCRETE_KINDS, *NUMERIC_KINDS, "label"):
        raise DataError(f"rule {text!r}: a fixed column is a category, a boolean or a number")
    pairs = [("", "")] if kind == "fixed" else None  # filled from the data by the caller
    return Rule(kind=kind, columns=columns, strict=op in ("<", ">"), pairs=pairs)  # type: ignore[arg-type]
