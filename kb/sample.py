"""A seeded random sample of claims with their sources, for auditing them against the papers.

Run `python -m kb.sample --n 20 --seed 17` (add `--checked` to draw only from claims already
checked against a stored source text). The same seed and data always give the same sample.

>>> from kb.loader import load
>>> picks = sample_claims(load().entries, n=3, seed=1)
>>> len(picks), picks == sample_claims(load().entries, n=3, seed=1)
(3, True)
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from kb.schema import Claim, Entry


@dataclass(frozen=True)
class SampledClaim:
    entry_id: str
    entry_name: str
    index: int  # position of the claim in its entry
    claim: Claim

    def line(self) -> str:
        c = self.claim
        extra = "; ".join(x for x in (f"vs {c.baseline}" if c.baseline else "", c.setting) if x)
        checked = (
            f"\n      checked against: {c.checked_against}"
            if c.checked_against
            else "\n      not yet checked against a stored source text"
        )
        return (
            f"{self.entry_id} #{self.index}: {c.statement()}"
            + (f" ({extra})" if extra else "")
            + f"\n      source: {c.source.cite()}"
            + checked
        )


def all_claims(entries: Iterable[Entry], checked_only: bool = False) -> list[SampledClaim]:
    return [
        SampledClaim(e.id, e.name, i, c)
        for e in entries
        for i, c in enumerate(e.claims)
        if c.checked_against or not checked_only
    ]


def sample_claims(
    entries: Sequence[Entry], n: int = 20, seed: int = 17, checked_only: bool = False
) -> list[SampledClaim]:
    """`n` claims drawn without replacement, in a fixed order for a given seed and data."""
    pool = all_claims(entries, checked_only)
    return random.Random(seed).sample(pool, min(n, len(pool)))


def main(argv: list[str] | None = None) -> int:
    from kb.loader import load

    ap = argparse.ArgumentParser(prog="python -m kb.sample", description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20, help="claims to draw (default 20)")
    ap.add_argument("--seed", type=int, default=17, help="random seed (default 17)")
    ap.add_argument("--checked", action="store_true", help="only claims checked against a text")
    args = ap.parse_args(argv)
    entries = load().entries
    picks = sample_claims(entries, args.n, args.seed, args.checked)
    pool = len(all_claims(entries, args.checked))
    print(f"{len(picks)} of {pool} claims, seed {args.seed}:")
    for i, p in enumerate(picks, 1):
        print(f"{i:>2}. {p.line()}")
    n_checked = sum(1 for p in picks if p.claim.checked_against)
    print(
        f"{n_checked} of {len(picks)} sampled claims record the source text they were checked in."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
