"""The job ids of every shipped ``studies/*.toml`` are pinned (issue 15, item 4).

A job id is where a finished result is found again (``<output>/jobs/<id>``): a code change that
changes the id of an unchanged job orphans every user's finished results of that job. The pin,
``job_ids.json`` next to this file, holds per study the sha256 of the study file, the number of
jobs per kind, the sha256 of the sorted full ids and the sorted 16-hex-digit prefixes of the ids
(enough to name the jobs that left or entered the plan; 2**64 values for a few thousand ids).

* Ids that leave the plan of an unchanged study file fail as an accidental re-keying.
* An intentional change (a study file edited or added, a deliberate ``RESULTS_VERSION`` bump)
  is one command away, named in every failure message::

      PYTHONPATH=src python tests/study/test_job_ids.py
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
STUDIES = ROOT / "studies"
PIN = Path(__file__).with_name("job_ids.json")
REGENERATE = "PYTHONPATH=src python tests/study/test_job_ids.py"
PREFIX = 16


def pin_of(path: Path) -> dict[str, Any]:
    """The pin entry of one study file: ``{"toml_sha256", "count", "kinds", "ids_sha256",
    "ids"}`` (``ids``: sorted :data:`PREFIX`-hex-digit prefixes of the job ids)."""
    from prunescope.study import load_spec, make_plan

    plan = make_plan(load_spec(path))
    ids = sorted(j.id for j in plan.jobs)
    return {
        "toml_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "count": len(ids),
        "kinds": plan.counts(),
        "ids_sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(),
        "ids": [i[:PREFIX] for i in ids],
    }


def shipped() -> list[Path]:
    """The shipped study files, ``studies/*.toml``, without hidden ones (the staged copies
    ``bench/run_staged.sh`` writes there while it runs)."""
    return [p for p in sorted(STUDIES.glob("*.toml")) if not p.name.startswith(".")]


def current() -> dict[str, dict[str, Any]]:
    """``{study file name: pin entry}`` of every ``studies/*.toml``, computed now."""
    return {p.name: pin_of(p) for p in shipped()}


def problems(pinned: dict[str, dict[str, Any]], now: dict[str, dict[str, Any]]) -> list[str]:
    """One line per study whose jobs differ from the pin (empty when all match)."""
    out = []
    for name in sorted(set(pinned) - set(now)):
        out.append(f"studies/{name} is pinned but no longer shipped: regenerate the pin")
    for name, cur in now.items():
        old = pinned.get(name)
        if old is None:
            out.append(f"studies/{name} has no pinned job ids ({cur['count']} jobs): pin them")
            continue
        if old["ids_sha256"] == cur["ids_sha256"]:
            continue
        gone = sorted(set(old["ids"]) - set(cur["ids"]))
        new = sorted(set(cur["ids"]) - set(old["ids"]))
        edited = old["toml_sha256"] != cur["toml_sha256"]
        what = (f"{len(gone)} of its {old['count']} pinned job ids left the plan "
                f"(e.g. {', '.join(gone[:3])}), {len(new)} new")
        if not edited and gone:
            out.append(
                f"studies/{name} is unchanged but {what}: a code change re-keys its jobs and "
                "would orphan users' finished results. Keep today's ids (a new job parameter "
                "enters the hash only when it differs from its default); if results really "
                "change, bump RESULTS_VERSION in src/prunescope/study/plan.py, then regenerate "
                "the pin")
        elif edited:
            out.append(f"studies/{name} was edited and {what}: if that is intended, "
                       "regenerate the pin")
        else:
            out.append(f"studies/{name} is unchanged and gained {len(new)} job ids (none left): "
                       "regenerate the pin")
    return out


def test_shipped_study_job_ids_are_pinned():
    pinned = json.loads(PIN.read_text())
    found = problems(pinned, current())
    assert not found, "\n".join(found) + f"\nregenerate the pin with: {REGENERATE}"


def _entry(toml: str, ids: list[str]) -> dict[str, Any]:
    full = sorted(ids)
    return {"toml_sha256": toml, "count": len(full), "kinds": {},
            "ids_sha256": hashlib.sha256("\n".join(full).encode()).hexdigest(),
            "ids": [i[:PREFIX] for i in full]}


def test_problems_tells_rekeying_from_an_edit():
    a, b, c = "a" * 64, "b" * 64, "c" * 64
    pinned = {"s.toml": _entry("t1", [a, b])}
    assert problems(pinned, {"s.toml": _entry("t1", [a, b])}) == []
    rekeyed = problems(pinned, {"s.toml": _entry("t1", [a, c])})
    assert len(rekeyed) == 1 and "re-keys" in rekeyed[0] and "1 of its 2" in rekeyed[0]
    edited = problems(pinned, {"s.toml": _entry("t2", [a, c])})
    assert len(edited) == 1 and "was edited" in edited[0]
    grown = problems(pinned, {"s.toml": _entry("t1", [a, b, c])})
    assert len(grown) == 1 and "gained 1" in grown[0]
    assert "no pinned job ids" in problems({}, {"s.toml": _entry("t1", [a])})[0]
    assert "no longer shipped" in problems(pinned, {})[0]


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    PIN.write_text(json.dumps(current(), indent=1, sort_keys=True) + "\n")
    print(f"pinned the job ids of {len(shipped())} studies in "
          f"{PIN.relative_to(ROOT)}")
