"""Field checks for config validation: each failure raises `UserError` with one line naming the
field, the value and what is allowed. Used by `validate.py` and by the modules that own a family
of names (an objective checks its own fields)."""

from __future__ import annotations

import numbers
from typing import Any, Iterable, Mapping

from vae_jax.errors import UserError


def fail(field: str, value: Any, allowed: str) -> None:
  raise UserError(f"config.{field}={value!r} is invalid: expected {allowed}")


def get(c, field: str):
  """The value of a dotted field, or a one-line error when the config lacks it."""
  node = c
  for part in field.split("."):
    try:
      node = node[part]
    except (KeyError, AttributeError, TypeError):
      raise UserError(f"config.{field} is missing: every config must define it (see "
                      "vae_jax/config.py)") from None
  return node


def not_renamed(c, renamed: Mapping[str, str]) -> None:
  """No field is set under a name it no longer has (`renamed`: old -> new dotted name): in an
  old config file, `c.tcvae_beta = 4.0` adds a field that nothing reads."""
  for old, new in renamed.items():
    try:
      value = get(c, old)
    except UserError:
      continue
    raise UserError(f"config.{old}={value!r} sets a field that is now config.{new} (each "
                    "objective's own fields are in a sub-dict named for it)")


def integer(c, field: str, lo: int | None = None) -> None:
  v = get(c, field)
  if isinstance(v, bool) or not isinstance(v, numbers.Integral):
    fail(field, v, "an integer" + (f" >= {lo}" if lo is not None else ""))
  if lo is not None and v < lo:
    fail(field, v, f"an integer >= {lo}")


def number(c, field: str, lo: float | None = None, hi: float | None = None,
           lo_open: bool = False) -> None:
  v = get(c, field)
  if (isinstance(v, bool) or not isinstance(v, numbers.Real) or v != v
      or v in (float("inf"), float("-inf"))):
    fail(field, v, "a finite number")
  bad = (lo is not None and (v <= lo if lo_open else v < lo)) or (hi is not None and v > hi)
  if bad:
    rng = f"{'>' if lo_open else '>='} {lo}" if lo is not None else ""
    if hi is not None:
      rng += (" and " if rng else "") + f"<= {hi}"
    fail(field, v, f"a number {rng}")


def choice(c, field: str, choices: Iterable) -> None:
  """The value is one of `choices` (a tuple, or the keys of the table that owns the names)."""
  choices = tuple(choices)
  v = get(c, field)
  if v not in choices:
    fail(field, v, "one of " + ", ".join(repr(x) for x in choices))


def boolean(c, field: str) -> None:
  v = get(c, field)
  if not isinstance(v, bool):
    fail(field, v, "True or False")


def optional_string(c, field: str) -> None:
  v = get(c, field)
  if v is not None and (not isinstance(v, str) or not v):
    fail(field, v, "a non-empty string or unset")


def positive_ints(c, field: str, example: str, allow_empty: bool = True) -> None:
  v = get(c, field)
  if not isinstance(v, (tuple, list)) or (not allow_empty and not v) or any(
      isinstance(h, bool) or not isinstance(h, numbers.Integral) or h < 1 for h in v):
    fail(field, v, ("a tuple" if allow_empty else "a non-empty tuple")
         + f" of positive integers, e.g. {example}")
