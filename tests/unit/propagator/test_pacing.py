"""How far a fan-out may run ahead, and how long an applier batch is."""

from __future__ import annotations

from setaccounts_propagator.pacing import BatchSizer, Lead


def test_before_any_progress_a_fan_out_may_emit_its_least_lead() -> None:
    lead = Lead(seconds=0.5, least=50, most=2000)
    assert lead.allowance(emitted=0, applied=0) == 50
    assert lead.allowance(emitted=50, applied=0) == 0


def test_the_lead_follows_the_applier_pace_within_its_bounds() -> None:
    lead = Lead(seconds=0.5, least=50, most=2000)
    lead.observe(0.0, 0)
    lead.observe(1.0, 400)  # 400 applied per second
    assert lead.bound == 200
    assert lead.allowance(emitted=500, applied=400) == 100
    fast = Lead(seconds=0.5, least=50, most=2000)
    fast.observe(0.0, 0)
    fast.observe(1.0, 100_000)
    assert fast.bound == 2000


def test_the_pace_is_measured_over_a_recent_window() -> None:
    lead = Lead(seconds=1.0, least=1, most=10_000)
    lead.observe(0.0, 0)
    lead.observe(1.0, 1000)  # fast at first
    for t in range(2, 12):
        lead.observe(float(t), 1000 + (t - 1) * 10)  # then 10 per second
    assert lead.pace < 20


def test_batches_are_sized_to_the_time_per_record() -> None:
    sizer = BatchSizer(seconds=0.5, most=1000, least=10)
    assert sizer.size() == 10
    sizer.observe(10, 0.1)  # 10 ms per record
    assert sizer.size() == 50
    for _ in range(20):
        sizer.observe(100, 0.01)  # 0.1 ms per record: capped
    assert sizer.size() == 1000
