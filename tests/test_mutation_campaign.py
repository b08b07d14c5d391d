"""The structured-mutation campaign (tests/mutation_campaign.py), run in full: at least 400
malformed models and 300 tampered plans over 5 or more models, seeded; and the compile
time of a deep and a wide graph.

Every malformed model is refused with a message or runs bit-exact with TFLM; `compile`
and `inspect` exit 0 or 1 on it, never with a traceback or a kill; every tampered plan is
refused at load or gives the untampered outputs with 0 hazards and intact memory guards.
`python tests/mutation_campaign.py` prints the same campaign as tables.
"""

from __future__ import annotations

import hashlib

import pytest
from mutation_campaign import Outcome, Report, model_mutants, run_campaign, scale_checks


@pytest.fixture(scope="module")
def report() -> Report:
    result = run_campaign()
    print(result.tables())
    return result


def _row(r: Outcome) -> str:
    return f"[{r.outcome}] {r.mutant.family} | {r.mutant.base} | {r.mutant.what}: {r.detail}"


def _listing(rows: list[str]) -> str:
    return f"{len(rows)} cases:\n" + "\n".join(rows[:60])


def test_campaign_size(report: Report) -> None:
    assert len(report.models) >= 400
    assert len(report.plans) >= 300
    assert len(report.plan_bases) >= 5
    assert {"mobilenetv2_small.tflite", "resnet8.tflite"} <= set(report.plan_bases)
    assert len({r.mutant.family for r in report.models}) >= 12
    # Mutants that are all refused would prove little: some must still run.
    assert any(r.outcome == "bit-exact" for r in report.models)
    assert any(r.outcome == "accepted, identical" for r in report.plans)


def test_no_silent_divergence_from_tflm(report: Report) -> None:
    bad = report.model_failures()
    assert not bad, _listing([_row(r) for r in bad])


def test_no_tampered_plan_gives_a_silent_wrong_result(report: Report) -> None:
    bad = report.plan_failures()
    assert not bad, _listing([_row(r) for r in bad])


def test_compile_and_inspect_never_traceback(report: Report) -> None:
    bad = report.cli_failures()
    rows = [f"{r.mutant.family} | {r.mutant.base} | {r.mutant.what}: {c}" for r, c in bad]
    assert not bad, _listing(rows)


def test_model_mutants_are_deterministic() -> None:
    def digest() -> list[str]:
        return [hashlib.sha256(m.data).hexdigest() for m in model_mutants()]

    assert digest() == digest()


def test_deep_and_wide_graphs_compile_in_seconds() -> None:
    """A 2,000-op chain and a 1,000-branch fan-out: `compile` and `inspect` each finish in
    under 10 s (in a subprocess, under the campaign's memory limit), exit 0 or 1."""
    rows = scale_checks()
    bad = [f"{cmd} {name}: {problem}" for name, cmd, _, problem in rows if problem]
    assert not bad, "\n".join(bad)
