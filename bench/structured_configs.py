"""Achieved ratios of the structured configs on ResNet-56 (10 classes, 853,018 parameters).

For each (config, requested ratio): the published setting it starts from, the keep-proportion
scale, the residual-stream widths of stages 1-3 (the stem writes stage 1's), the inner widths per
stage (min-max over the 9 blocks), the parameters left and the achieved ratio (all parameters
before / all after, SPEC 3). Widths depend on the architecture, config and ratio only (not on
scores or weights), so a seeded initialisation is used.

Usage:
    python bench/structured_configs.py             # markdown table on stdout
"""
from __future__ import annotations

import argparse

from prunescope.models import build_model
from prunescope.prune import count_parameters
from prunescope.catalog.structured_configs import STRUCTURED_CONFIGS
from prunescope.prune.channel_scores import l1_filter_scores
from prunescope.prune.structured import config_widths, structured_max_ratio, structured_prune

#: Table 13 of Good et al. 2022 (CHIP), and the ratios of studies/paper-modern.toml
RATIOS = (1.75, 3.33, 8.27, 19.11, 2.0, 4.0, 10.0, 20.0)


def rows(num_classes: int = 10) -> list[str]:
    model = build_model("resnet56", num_classes, seed=0)
    n = count_parameters(model)
    out = ["| config | requested | setting (reported ratio) | scale | streams | inner | params "
           "| achieved |", "|---|---|---|---|---|---|---|---|"]
    sc = l1_filter_scores(model)
    for r in RATIOS:
        res = structured_prune(model, sc, r)
        inner = [[res.widths[f"layer{s}.{b}.conv1"] for b in range(9)] for s in (1, 2, 3)]
        out.append(f"| uniform | {r:g} | - | - | 16/32/64 | "
                   + "/".join(f"{min(w)}-{max(w)}" if min(w) != max(w) else f"{w[0]}"
                              for w in inner) + f" | {res.n_after:,} | {res.achieved_ratio:.4f} |")
    out.append(f"| uniform | max | - | - | 16/32/64 | 1/1/1 | "
               f"{round(n / structured_max_ratio(model)):,} | {structured_max_ratio(model):.4f} |")
    for name, cfg in STRUCTURED_CONFIGS.items():
        reported = tuple(s.reported_ratio for s in cfg.settings)
        for r in reported + RATIOS:
            try:
                cw = config_widths(model, name, r)
            except ValueError:  # UnreachableRatioError is a ValueError
                continue
            w = cw.widths
            streams = "/".join(str(w.get(f"layer{s}", (16, 32, 64)[s - 1])) for s in (1, 2, 3))
            inner = [[w[f"layer{s}.{b}.conv1"] for b in range(9)] for s in (1, 2, 3)]
            rep = dict((s.name, s.reported_ratio) for s in cfg.settings)[cw.setting]
            out.append(f"| {name} | {r:.4g} | {cw.setting} ({rep:.4g}) | {cw.scale:.4f} | "
                       f"{streams} | " + "/".join(f"{min(x)}-{max(x)}" if min(x) != max(x)
                                                  else f"{x[0]}" for x in inner)
                       + f" | {round(n / cw.achieved_ratio):,} | {cw.achieved_ratio:.4f} |")
        top = structured_max_ratio(model, name)
        out.append(f"| {name} | max | - | 0 | - | - | {round(n / top):,} | {top:.4f} |")
    return out


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    print("\n".join(rows()))


if __name__ == "__main__":
    main()
