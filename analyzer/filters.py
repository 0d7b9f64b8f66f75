"""A small, safe filter language over the columns of a DataFrame: the CLI's `-Y/--filter`, and the API.

    import analyzer
    from analyzer import filters
    a = analyzer.analyze("capture.pcapng")
    closes = filters.apply(a.frames, "opcode_name == 'close' and sender == 'server'")
    big = filters.apply(a.messages, "size > 65536 and type in ['binary']")

The syntax is a Python expression, parsed with `ast` and never run by Python: only the nodes listed
below are accepted, each translated into one vectorised pandas operation on whole columns (no
eval, no DataFrame.query, no attribute access, no calls but the four string tests).

- comparisons `== != < <= > >=` (chains like `1000 <= close_code < 2000` too), `in [..]`,
  `not in [..]`, and `'text' in column` (substring);
- `and`, `or`, `not` (also tshark's `&&`, `||`, `!`, and `eq ne lt le gt ge`);
- `column contains 'text'` and `column matches 'regex'` (case-insensitive, as in Wireshark), or
  the call forms `contains(c, s)`, `matches(c, r)`, `startswith(c, s)`, `endswith(c, s)`;
- `+ - * / %` between numbers; constants: numbers, quoted text, `true`/`false`, `null`;
- a yes/no column alone (`fin and not masked`);
- a time column against quoted text (`ts >= '2026-11-26 13:39:56'`, UTC unless an offset is
  given); a duration column against seconds.

Null cells never match a comparison (`close_code != 1000` skips rows without a code), so
`not (close_code == 1000)` is the way to include them, as Wireshark's `!` does.
"""

from __future__ import annotations

import ast
import operator
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

__all__ = ["TWINS", "FilterError", "apply", "mask", "names"]

MAX_LENGTH = 10_000     # characters of one expression
MAX_NODES = 2_000       # syntax nodes of one expression

_STRING = re.compile(r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*\"""", re.S)
# tshark habits, rewritten outside quoted text before parsing
_REWRITES = (
    (re.compile(r"&&"), " and "),
    (re.compile(r"\|\|"), " or "),
    (re.compile(r"!(?!=)"), " not "),
    (re.compile(r"\beq\b"), "=="), (re.compile(r"\bne\b"), "!="),
    (re.compile(r"\blt\b"), "<"), (re.compile(r"\ble\b"), "<="),
    (re.compile(r"\bgt\b"), ">"), (re.compile(r"\bge\b"), ">="),
    # infix contains / matches become the shift operators, which nothing else here uses
    (re.compile(r"\bcontains\b(?!\s*\()"), " << "),
    (re.compile(r"\bmatches\b(?!\s*\()"), " >> "),
)
_COMPARE: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
}
_ARITH: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.Mod: operator.mod,
}
_WORDS = {"true": True, "false": False, "null": None, "none": None}
_FUNCTIONS = ("contains", "matches", "startswith", "endswith")
#: numeric columns of our tables that have a text twin (used when there is one in the table)
TWINS = {"opcode": "opcode_name"}


class FilterError(ValueError):
    """A filter that cannot be parsed or does not fit the table; the message is one line."""


@dataclass(frozen=True)
class _Col:
    """A column as an operand: its name (for messages and text twins) and its values."""

    name: str
    values: pd.Series


def _rewrite(expr: str) -> str:
    """`expr` with tshark's operators turned into Python's, quoted text left alone."""
    out, pos = [], 0
    for m in _STRING.finditer(expr):
        out.append(_rewrite_plain(expr[pos:m.start()]))
        out.append(m.group())
        pos = m.end()
    out.append(_rewrite_plain(expr[pos:]))
    return "".join(out)


def _rewrite_plain(text: str) -> str:
    for pattern, replacement in _REWRITES:
        text = pattern.sub(replacement, text)
    return text


def _parse(expr: str) -> ast.Expression:
    if not isinstance(expr, str):     # from Python, where nothing checked the type
        raise FilterError(f"a filter is text, not {type(expr).__name__}")
    if not expr.strip():
        raise FilterError("empty filter")
    if len(expr) > MAX_LENGTH:
        raise FilterError(f"filter longer than {MAX_LENGTH:,} characters")
    try:
        with warnings.catch_warnings():  # '\d' in a quoted regex: an "invalid escape" warning
            warnings.simplefilter("ignore")
            tree = ast.parse(_rewrite(expr).strip(), mode="eval")
    except SyntaxError as exc:
        raise FilterError(f"cannot parse filter {expr!r}: {exc.msg}") from None
    except (ValueError, RecursionError, MemoryError):
        raise FilterError(f"cannot parse filter {expr!r}") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise FilterError(f"filter has more than {MAX_NODES:,} parts")
    return tree


def names(expr: str) -> set[str]:
    """The column names `expr` refers to (true/false/null and function names left out)."""
    tree = _parse(expr)
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return {n.id for n in ast.walk(tree)
            if isinstance(n, ast.Name) and id(n) not in called and n.id.lower() not in _WORDS}


def mask(df: pd.DataFrame, expr: str, *, aliases: Mapping[str, str] | None = None,
         twins: Mapping[str, str] | None = None) -> pd.Series:
    """A boolean Series (df's index): the rows `expr` selects.

    Args:
        df: the table.
        expr: the filter (see the module docstring).
        aliases: other names for columns, e.g. {"conn": "conn_id"}.
        twins: a numeric column's text twin, used when it is compared with text, e.g.
            {"opcode": "opcode_name"} (in TWINS already) makes `opcode == 'close'` work.

    Raises:
        FilterError: the filter cannot be parsed, names a column the table lacks (the message lists
            the columns), or compares values that do not compare (text with a number…).
    """
    ev = _Evaluator(df, dict(aliases or {}), {**TWINS, **(twins or {})})
    result = ev.as_mask(ev.eval(_parse(expr).body))
    return result


def apply(df: pd.DataFrame, expr: str | None, **kwargs: Any) -> pd.DataFrame:
    """The rows of `df` that `expr` selects (all of them for None or ""); see `mask` for kwargs."""
    if expr is None or not str(expr).strip():
        return df
    return df[mask(df, expr, **kwargs).to_numpy()]


class _Evaluator:
    def __init__(self, df: pd.DataFrame, aliases: dict[str, str], twins: dict[str, str]) -> None:
        self.df, self.aliases, self.twins = df, aliases, twins

    # --- operands ---
    def column(self, name: str) -> _Col:
        real = name if name in self.df.columns else self.aliases.get(name)
        if real is None or real not in self.df.columns:
            listed = ", ".join([*map(str, self.df.columns), *self.aliases])
            raise FilterError(f"unknown column {name!r}; columns: {listed}")
        s = self.df[real]
        if isinstance(s.dtype, pd.CategoricalDtype):
            cats = s.cat.categories
            s = s.astype("string" if cats.dtype == object or len(cats) == 0 else cats.dtype)
        return _Col(real, s)

    def eval(self, node: ast.AST) -> Any:
        method = getattr(self, f"_{type(node).__name__}", None)
        if method is None:
            raise FilterError(f"not allowed in a filter: {_describe(node)}")
        return method(node)

    def _Constant(self, node: ast.Constant) -> Any:
        if node.value is not None and not isinstance(node.value, (str, int, float, bool)):
            raise FilterError(f"not allowed in a filter: the constant {node.value!r}")
        return node.value

    def _Name(self, node: ast.Name) -> Any:
        word = node.id.lower()
        if word in _WORDS and node.id not in self.df.columns:
            return _WORDS[word]
        return self.column(node.id)

    def _List(self, node: ast.List | ast.Tuple | ast.Set) -> list[Any]:
        values = [self.eval(e) for e in node.elts]
        if any(isinstance(v, (_Col, list, pd.Series)) for v in values):
            raise FilterError("a list in a filter holds constants only")
        return values

    _Tuple = _Set = _List

    def _UnaryOp(self, node: ast.UnaryOp) -> Any:
        value = self.eval(node.operand)
        if isinstance(node.op, ast.Not):
            return ~self.as_mask(value)
        if isinstance(node.op, (ast.USub, ast.UAdd)):
            sign = -1 if isinstance(node.op, ast.USub) else 1
            if isinstance(value, _Col) and pd.api.types.is_numeric_dtype(value.values.dtype):
                return sign * value.values
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return sign * value
            raise FilterError("a sign goes before a number")
        raise FilterError(f"not allowed in a filter: {_describe(node.op)}")

    def _BoolOp(self, node: ast.BoolOp) -> pd.Series:
        masks = [self.as_mask(self.eval(v)) for v in node.values]
        combine = operator.and_ if isinstance(node.op, ast.And) else operator.or_
        result = masks[0]
        for m in masks[1:]:
            result = combine(result, m)
        return result

    def _BinOp(self, node: ast.BinOp) -> Any:
        left, right = self.eval(node.left), self.eval(node.right)
        if isinstance(node.op, ast.LShift):
            return self.text_test("contains", left, right)
        if isinstance(node.op, ast.RShift):
            return self.text_test("matches", left, right)
        op = _ARITH.get(type(node.op))
        if op is None:
            raise FilterError(f"not allowed in a filter: {_describe(node.op)}")
        a, b = (self.number(v) for v in (left, right))
        try:
            return op(a, b)
        except ZeroDivisionError:
            raise FilterError("division by zero in the filter") from None

    def _Call(self, node: ast.Call) -> pd.Series:
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
            raise FilterError(f"not allowed in a filter: a call of {ast.unparse(node.func)!r} "
                              f"(functions: {', '.join(_FUNCTIONS)})")
        if node.keywords or len(node.args) != 2:
            raise FilterError(f"{node.func.id}() takes a column and a quoted text")
        return self.text_test(node.func.id, self.eval(node.args[0]), self.eval(node.args[1]))

    def _Compare(self, node: ast.Compare) -> pd.Series:
        result = None
        left = self.eval(node.left)
        for op, comparator in zip(node.ops, node.comparators):
            right = self.eval(comparator)
            m = self.compare(op, left, right)
            result = m if result is None else result & m
            left = right
        assert result is not None
        return result

    # --- operations ---
    def compare(self, op: ast.cmpop, left: Any, right: Any) -> pd.Series:
        if isinstance(op, (ast.In, ast.NotIn)):
            m = self.membership(left, right)
            return ~m if isinstance(op, ast.NotIn) else m
        fn = _COMPARE.get(type(op))
        if fn is None:
            raise FilterError(f"not allowed in a filter: {_describe(op)}")
        if isinstance(left, list) or isinstance(right, list):
            raise FilterError("a list goes after 'in'")
        if not isinstance(left, (_Col, pd.Series)) and isinstance(right, (_Col, pd.Series)):
            left, right, fn = right, left, _flip(fn)
        if not isinstance(left, (_Col, pd.Series)):
            return self.broadcast(bool(fn(left, right)))
        if right is None:
            if fn not in (operator.eq, operator.ne):
                raise FilterError("null can only be compared with == or !=")
            values = left.values if isinstance(left, _Col) else left
            return values.isna() if fn is operator.eq else values.notna()
        a = self.values_for(left, right)
        b = right.values if isinstance(right, _Col) else self.constant_for(left, a, right)
        try:
            result = fn(a, b)
        except TypeError as exc:
            raise FilterError(f"cannot compare {_what(left)} with {_what(right)}: {exc}") from None
        return self.as_mask(result)

    def membership(self, left: Any, right: Any) -> pd.Series:
        if isinstance(left, str) and isinstance(right, _Col):  # 'gap' in detail
            return self.text_test("contains", right, left, case=True)
        if not isinstance(right, list):
            raise FilterError("'in' takes a list, e.g. kind in ['tcp-gap', 'invalid-utf8'], "
                              "or 'text' in column")
        if not isinstance(left, _Col):
            raise FilterError("'in' needs a column on its left")
        if not right:
            return self.broadcast(False)
        a = self.values_for(left, right[0])
        values = [self.constant_for(left, a, v) for v in right if v is not None]
        m = self.as_mask(a.isin(values))
        return m | a.isna() if None in right else m

    def text_test(self, kind: str, col: Any, pattern: Any, case: bool = True) -> pd.Series:
        if not isinstance(col, _Col) or not isinstance(pattern, str):
            raise FilterError(f"{kind} takes a column and a quoted text, e.g. detail {kind} 'gap'")
        s = col.values.astype("string")
        if kind == "contains":
            result = s.str.contains(pattern, regex=False, case=case)
        elif kind == "matches":
            try:
                compiled = re.compile(pattern, re.IGNORECASE)
            except re.error as exc:
                raise FilterError(f"bad regular expression {pattern!r}: {exc}") from None
            result = s.str.contains(compiled, regex=True)
        else:
            result = getattr(s.str, kind)(pattern)
        return self.as_mask(result)

    def values_for(self, col: _Col | pd.Series, constant: Any) -> pd.Series:
        """The column's values; a numeric column compared with text uses its text twin."""
        if isinstance(col, pd.Series):
            return col
        s = col.values
        if isinstance(constant, str) and pd.api.types.is_numeric_dtype(s.dtype) \
                and not pd.api.types.is_bool_dtype(s.dtype) and col.name in self.twins:
            return self.column(self.twins[col.name]).values
        return s

    def constant_for(self, col: Any, values: pd.Series, constant: Any) -> Any:
        """`constant` converted to what the column holds (times, durations), or a clear error."""
        dtype = values.dtype
        name = col.name if isinstance(col, _Col) else "the value"
        if pd.api.types.is_datetime64_any_dtype(dtype):
            if not isinstance(constant, str):
                raise FilterError(f"{name} is a time: compare it with quoted text such as "
                                  "'2026-11-26 13:39:56' (or use the time column, in seconds)")
            try:
                ts = pd.Timestamp(constant)
            except (ValueError, TypeError):
                raise FilterError(f"not a time: {constant!r}") from None
            if pd.isna(ts):
                raise FilterError(f"not a time: {constant!r}")
            return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        if pd.api.types.is_timedelta64_dtype(dtype):
            if isinstance(constant, bool) or not isinstance(constant, (int, float)):
                raise FilterError(f"{name} is a duration: compare it with seconds, e.g. {name} > 1.5")
            return pd.Timedelta(seconds=constant)
        if pd.api.types.is_bool_dtype(dtype):
            if not isinstance(constant, bool):
                raise FilterError(f"{name} is yes/no: compare it with true or false")
            return constant
        if pd.api.types.is_numeric_dtype(dtype):
            if isinstance(constant, str):
                raise FilterError(f"{name} holds numbers, not text: {constant!r}")
            return constant
        if not isinstance(constant, str):
            raise FilterError(f"{name} holds text: quote the value, e.g. {name} == '{constant}'")
        return constant

    def number(self, value: Any) -> Any:
        if isinstance(value, _Col):
            value = value.values
        if isinstance(value, pd.Series) and pd.api.types.is_numeric_dtype(value.dtype) \
                and not pd.api.types.is_bool_dtype(value.dtype):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
        raise FilterError(f"arithmetic needs numbers, not {_what(value)}")

    def as_mask(self, value: Any) -> pd.Series:
        if isinstance(value, _Col):
            if not pd.api.types.is_bool_dtype(value.values.dtype):
                raise FilterError(f"{value.name} is not a yes/no column: compare it, e.g. "
                                  f"{value.name} == …")
            value = value.values
        if isinstance(value, bool):
            return self.broadcast(value)
        if not isinstance(value, pd.Series):
            raise FilterError(f"a filter must be a condition, not {_what(value)}")
        if not pd.api.types.is_bool_dtype(value.dtype):
            raise FilterError("a filter must be a condition (a comparison), not a value")
        return value.fillna(False).astype(bool)

    def broadcast(self, value: bool) -> pd.Series:
        return pd.Series(value, index=self.df.index, dtype=bool)


def _flip(fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    return {operator.lt: operator.gt, operator.gt: operator.lt, operator.le: operator.ge,
            operator.ge: operator.le}.get(fn, fn)


def _what(value: Any) -> str:
    if isinstance(value, _Col):
        return f"column {value.name}"
    if isinstance(value, pd.Series):
        return "a computed column"
    return repr(value)


def _describe(node: ast.AST) -> str:
    kinds = {ast.Attribute: "attribute access (.)", ast.Subscript: "indexing ([])",
             ast.Lambda: "lambda", ast.IfExp: "if/else", ast.Dict: "a dict",
             ast.NamedExpr: "assignment (:=)", ast.Starred: "*", ast.JoinedStr: "f-strings"}
    return kinds.get(type(node), type(node).__name__)

