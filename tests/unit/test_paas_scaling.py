"""cumulo.paas.scaling: Heat's capacity arithmetic, cooldowns, scale-in victims and threshold alarms."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cumulo.errors import Conflict, Invalid
from cumulo.paas.scaling import (
    Action,
    Adjustment,
    AdjustmentType,
    AlarmState,
    Bounds,
    Comparison,
    CooldownState,
    Member,
    Reason,
    Sample,
    ThresholdRule,
    choose_victims,
    decide,
    effective_cooldown,
    evaluate,
    finish_scaling,
    new_capacity,
    percent_delta,
    period_averages,
    start_scaling,
)

CHANGE = AdjustmentType.CHANGE_IN_CAPACITY
EXACT = AdjustmentType.EXACT_CAPACITY
PERCENT = AdjustmentType.PERCENT_CHANGE_IN_CAPACITY
T0 = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# Heat's own scenarios, heat/tests/autoscaling/test_new_capacity.py:27-102 (526defd06), verbatim values.
HEAT_SCENARIOS = [
    # id, current, adjustment, type, min_adjustment_step, min, max, expected
    ("+n", 2, 3, CHANGE, None, 0, 10, 5),
    ("-n", 6, -2, CHANGE, None, 0, 5, 4),
    ("+nb", 2, 8, CHANGE, None, 0, 5, 5),
    ("-nb", 2, -10, CHANGE, None, 1, 5, 1),
    ("e", 2, 4, EXACT, None, 0, 5, 4),
    ("+eb", 2, 11, EXACT, None, 0, 5, 5),
    ("-eb", 4, 1, EXACT, None, 3, 5, 3),
    ("+p", 4, 50, PERCENT, None, 1, 10, 6),
    ("-p", 4, -25, PERCENT, None, 1, 10, 3),
    ("+pb", 4, 100, PERCENT, None, 1, 6, 6),
    ("-pb", 6, -50, PERCENT, None, 4, 10, 4),
    ("-p+r", 2, -33, PERCENT, None, 0, 10, 1),
    ("+p+r", 1, 33, PERCENT, None, 0, 10, 2),
    ("-p-r", 2, -66, PERCENT, None, 0, 10, 1),
    ("+p-r", 1, 225, PERCENT, None, 0, 10, 3),
    ("+ps", 1, 100, PERCENT, 3, 0, 10, 4),
    ("+p+rs", 1, 33, PERCENT, 2, 0, 10, 3),
    ("+p-rs", 1, 325, PERCENT, 2, 0, 10, 4),
    ("-p-rs", 3, -25, PERCENT, 2, 0, 10, 1),
]

# Cumulo's own edge cases.
EDGE_SCENARIOS = [
    ("zero change", 3, 0, CHANGE, None, 0, 10, 3),
    ("change from empty", 0, 2, CHANGE, None, 0, 10, 2),
    ("scale in to zero", 2, -2, CHANGE, None, 0, 10, 0),
    ("scale in past zero clamps to min 0", 1, -5, CHANGE, None, 0, 10, 0),
    ("negative change clamps to min", 5, -4, CHANGE, None, 2, 10, 2),
    ("exact zero", 3, 0, EXACT, None, 0, 10, 0),
    ("exact negative clamps to min", 3, -4, EXACT, None, 1, 10, 1),
    ("exact within bounds", 3, 7, EXACT, None, 1, 10, 7),
    ("exact at max", 3, 10, EXACT, None, 1, 10, 10),
    ("percent of empty tier is no change", 0, 50, PERCENT, None, 0, 10, 0),
    ("percent of empty tier, negative", 0, -50, PERCENT, None, 0, 10, 0),
    # Heat would give -step here (its direction comes from the zero step); Cumulo follows the request.
    ("percent of empty tier with step grows", 0, 100, PERCENT, 2, 0, 10, 2),
    ("percent zero with step stays", 4, 0, PERCENT, 2, 0, 10, 4),
    ("small + percent rounds up", 10, 5, PERCENT, None, 0, 20, 11),  # 0.5 -> 1
    ("small - percent rounds down", 10, -5, PERCENT, None, 0, 20, 9),  # -0.5 -> -1
    ("large + percent rounds down", 10, 15, PERCENT, None, 0, 20, 11),  # 1.5 -> 1
    ("large - percent rounds up", 10, -15, PERCENT, None, 0, 20, 9),  # -1.5 -> -1
    ("large + percent, 2.99", 13, 23, PERCENT, None, 0, 20, 15),  # 2.99 -> 2
    ("whole percent is exact", 10, 30, PERCENT, None, 0, 20, 13),
    ("-100 percent empties", 4, -100, PERCENT, None, 0, 10, 0),
    ("-100 percent clamps to min", 4, -100, PERCENT, None, 1, 10, 1),
    ("fractional percent", 10, 12.5, PERCENT, None, 0, 20, 11),  # 1.25 -> 1
    ("step smaller than the delta is ignored", 10, 50, PERCENT, 2, 0, 20, 15),
    ("step equal to the delta", 10, 20, PERCENT, 2, 0, 20, 12),
    ("step on scale-in", 10, -5, PERCENT, 3, 0, 20, 7),
    ("step 0 is no step", 10, 5, PERCENT, 0, 0, 20, 11),
    ("step then clamp to max", 9, 5, PERCENT, 4, 0, 10, 10),
    ("step then clamp to min", 3, -5, PERCENT, 4, 1, 10, 1),
    ("min == max pins the size", 3, 5, CHANGE, None, 4, 4, 4),
    ("size above max comes back to max", 12, 1, CHANGE, None, 0, 10, 10),
]


@pytest.mark.parametrize(
    ("current", "adjustment", "kind", "step", "low", "high", "expected"),
    [pytest.param(*row[1:], id=row[0]) for row in HEAT_SCENARIOS + EDGE_SCENARIOS],
)
def test_new_capacity(
    current: int,
    adjustment: float,
    kind: AdjustmentType,
    step: int | None,
    low: int,
    high: int,
    expected: int,
) -> None:
    adj = Adjustment(adjustment, kind, step)
    assert new_capacity(current, adj, Bounds(low, high)) == expected


@pytest.mark.parametrize(
    ("current", "percent", "expected"),
    [
        (0, 50, 0),
        (1, 1, 1),
        (1, -1, -1),
        (1, 99, 1),
        (1, -99, -1),
        (1, 100, 1),
        (1, -100, -1),
        (1, 199, 1),
        (1, -199, -1),
        (1, 200, 2),
        (3, 50, 1),  # 1.5
        (3, -50, -1),
        (7, 100, 7),
        (100, 0.5, 1),
        (100, -0.5, -1),
    ],
)
def test_percent_delta_rounding(current: int, percent: float, expected: int) -> None:
    assert percent_delta(current, percent) == expected


def test_adjustment_type_values_are_heats() -> None:
    assert {t.value for t in AdjustmentType} == {
        "change_in_capacity",
        "exact_capacity",
        "percent_change_in_capacity",
    }
    assert AdjustmentType("percent_change_in_capacity") is PERCENT


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"adjustment": 1, "type": CHANGE, "min_adjustment_step": 1}, "only with"),
        ({"adjustment": 1, "type": EXACT, "min_adjustment_step": 0}, "only with"),
        ({"adjustment": 1.5, "type": CHANGE}, "whole number"),
        ({"adjustment": 2.5, "type": EXACT}, "whole number"),
        ({"adjustment": 10, "type": PERCENT, "min_adjustment_step": -1}, "zero or more"),
        ({"adjustment": float("nan"), "type": PERCENT}, "finite"),
        ({"adjustment": float("inf"), "type": CHANGE}, "finite"),
    ],
)
def test_adjustment_validation(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(Invalid, match=needle):
        Adjustment(**kwargs)  # type: ignore[arg-type]


def test_adjustment_accepts_whole_float_and_percent_step() -> None:
    assert Adjustment(2.0, CHANGE).adjustment == 2.0
    assert Adjustment(33.3, PERCENT, 2).min_adjustment_step == 2


@pytest.mark.parametrize(
    ("low", "high", "needle"),
    [(3, 2, "can not be greater"), (-1, 2, "zero or more"), (0, -1, "zero or more")],
)
def test_bounds_validation(low: int, high: int, needle: str) -> None:
    with pytest.raises(Invalid, match=needle):
        Bounds(low, high)


def test_bounds_zero_and_desired() -> None:
    b = Bounds(0, 0)
    assert b.clamp(5) == 0
    Bounds(1, 3).check_desired(1)
    Bounds(1, 3).check_desired(3)
    with pytest.raises(Invalid, match="between"):
        Bounds(1, 3).check_desired(4)
    with pytest.raises(Invalid, match="between"):
        Bounds(1, 3).check_desired(0)


def test_negative_current_size_is_refused() -> None:
    with pytest.raises(Invalid):
        new_capacity(-1, Adjustment(1), Bounds(0, 3))


# --- cooldown -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "group", "expected"),
    [
        (None, None, 0.0),
        (None, 60, 60.0),
        (30, 60, 30.0),
        (0, 60, 0.0),  # a policy's 0 is set: it wins over the group's
        (-5, 60, 0.0),
        (None, -5, 0.0),
        (float("nan"), 60, 0.0),
    ],
)
def test_effective_cooldown(policy: float | None, group: float | None, expected: float) -> None:
    assert effective_cooldown(policy, group) == expected


UP = Adjustment(1)
DOWN = Adjustment(-1)
B = Bounds(1, 3)


@pytest.mark.parametrize(
    ("current", "adj", "state", "now", "ready", "action", "reason", "target"),
    [
        pytest.param(1, UP, CooldownState(), T0, True, Action.SCALE, Reason.SCALING, 2, id="idle scales"),
        pytest.param(2, DOWN, CooldownState(), T0, True, Action.SCALE, Reason.SCALING, 1, id="idle scales in"),
        pytest.param(
            1, UP, CooldownState(), T0, False, Action.NO_ACTION, Reason.NOT_READY, 1, id="not ready first"
        ),
        pytest.param(3, UP, CooldownState(), T0, True, Action.NO_ACTION, Reason.AT_MAX, 3, id="at max"),
        pytest.param(1, DOWN, CooldownState(), T0, True, Action.NO_ACTION, Reason.AT_MIN, 1, id="at min"),
        pytest.param(
            2, Adjustment(2, EXACT), CooldownState(), T0, True, Action.NO_ACTION, Reason.NO_CHANGE, 2,
            id="exact equal to size",
        ),
        pytest.param(
            2, Adjustment(0), CooldownState(), T0, True, Action.NO_ACTION, Reason.NO_CHANGE, 2, id="zero change"
        ),
        pytest.param(
            1, UP, CooldownState(scaling_in_progress=True), T0, True,
            Action.NO_ACTION, Reason.SCALING_IN_PROGRESS, 1, id="running scale drops the signal",
        ),
        pytest.param(
            1, UP, CooldownState(cooldown_end=at(60)), at(59), True,
            Action.NO_ACTION, Reason.COOLDOWN, 1, id="in cooldown",
        ),
        pytest.param(
            1, UP, CooldownState(cooldown_end=at(60)), at(60), True,
            Action.SCALE, Reason.SCALING, 2, id="cooldown end instant acts (now < end is strict)",
        ),
        pytest.param(
            1, UP, CooldownState(cooldown_end=at(60)), at(61), True,
            Action.SCALE, Reason.SCALING, 2, id="after cooldown",
        ),
        # Heat checks "no change" before the cooldown and the running flag: at max during a cooldown
        # the reason is at max, not cooldown.
        pytest.param(
            3, UP, CooldownState(scaling_in_progress=True, cooldown_end=at(60)), T0, True,
            Action.NO_ACTION, Reason.AT_MAX, 3, id="no change wins over cooldown",
        ),
        pytest.param(
            1, UP, CooldownState(scaling_in_progress=True, cooldown_end=at(60)), T0, True,
            Action.NO_ACTION, Reason.SCALING_IN_PROGRESS, 1, id="running wins over cooldown",
        ),
        pytest.param(
            0, Adjustment(100, PERCENT), CooldownState(), T0, True, Action.NO_ACTION, Reason.NO_CHANGE, 0,
            id="percent of empty tier",
        ),
    ],
)  # fmt: skip
def test_decide(
    current: int,
    adj: Adjustment,
    state: CooldownState,
    now: datetime,
    ready: bool,
    action: Action,
    reason: Reason,
    target: int,
) -> None:
    bounds = Bounds(0, 3) if current == 0 else B
    decision = decide(current, adj, bounds, state, now, ready=ready)
    assert (decision.action, decision.reason, decision.target) == (action, reason, target)
    assert decision.current == current
    assert decision.acts is (action is Action.SCALE)
    assert decision.describe()


def test_decide_cooldown_reports_its_end() -> None:
    d = decide(1, UP, B, CooldownState(cooldown_end=at(60)), T0)
    assert d.cooldown_end == at(60)
    assert "cooldown until 2026-12-06T12:01:00" in d.describe()


def test_describe_sentences() -> None:
    assert decide(1, UP, B, CooldownState(), T0).describe() == "scaling from 1 to 2"
    assert decide(3, UP, B, CooldownState(), T0).describe() == "no action: already at max size 3"
    assert decide(1, DOWN, B, CooldownState(), T0).describe() == "no action: already at min size 1"
    running = CooldownState(scaling_in_progress=True)
    assert decide(1, UP, B, running, T0).describe() == "no action: a scale is already running"


def test_start_scaling_marks_running_once() -> None:
    s = start_scaling(CooldownState())
    assert s.scaling_in_progress
    with pytest.raises(Conflict):
        start_scaling(s)


def test_cooldown_starts_at_the_end_of_a_resize_that_changed_the_size() -> None:
    s = start_scaling(CooldownState())
    # the resize took 40 s: the cooldown counts from its end, not from the signal
    done = finish_scaling(s, at(40), cooldown=60, size_changed=True)
    assert done == CooldownState(scaling_in_progress=False, cooldown_end=at(100))
    assert decide(2, UP, B, done, at(99)).reason is Reason.COOLDOWN
    assert decide(2, UP, B, done, at(100)).acts


def test_failed_or_unchanged_resize_starts_no_cooldown() -> None:
    s = start_scaling(CooldownState())
    done = finish_scaling(s, at(40), cooldown=60, size_changed=False)
    assert done == CooldownState()
    assert decide(2, UP, B, done, at(41)).acts


def test_failed_resize_keeps_an_earlier_cooldown() -> None:
    s = start_scaling(CooldownState(cooldown_end=at(100)))
    assert finish_scaling(s, at(40), 60, size_changed=False).cooldown_end == at(100)


def test_cooldown_end_never_moves_backwards() -> None:
    s = CooldownState(cooldown_end=at(500))
    assert finish_scaling(start_scaling(s), at(40), 60, True).cooldown_end == at(500)
    assert finish_scaling(start_scaling(s), at(480), 60, True).cooldown_end == at(540)


@pytest.mark.parametrize(("cooldown", "end"), [(0, 40), (-10, 40), (None, 40), (15.5, 55.5)])
def test_cooldown_sanitised(cooldown: float | None, end: float) -> None:
    done = finish_scaling(start_scaling(CooldownState()), at(40), cooldown, True)
    assert done.cooldown_end == at(end)
    assert not done.in_cooldown(at(end))


def test_no_action_signals_do_not_queue() -> None:
    """A storm of signals during a cooldown changes nothing; the first one after it acts once."""
    state = finish_scaling(start_scaling(CooldownState()), T0, 60, True)
    for second in range(0, 60, 5):
        d = decide(2, UP, B, state, at(second))
        assert d.reason is Reason.COOLDOWN
    first = decide(2, UP, B, state, at(60))
    assert first.acts and first.target == 3
    state = start_scaling(state)
    assert decide(3, UP, B, state, at(61)).reason is Reason.AT_MAX
    assert decide(3, DOWN, B, state, at(61)).reason is Reason.SCALING_IN_PROGRESS


def test_hitting_max_starts_no_cooldown() -> None:
    """At max Heat raises NoActionRequired before the cooldown check: the scale-in policy acts at once."""
    state = CooldownState()
    assert decide(3, UP, B, state, T0).reason is Reason.AT_MAX
    assert decide(3, DOWN, B, state, at(1)).acts


# --- scale-in victims ---------------------------------------------------------------------------

NODES = [
    Member("web-1", at(0)),
    Member("web-2", at(10)),
    Member("web-3", at(20)),
    Member("web-4", at(20)),  # same time as web-3: the name breaks the tie
]


@pytest.mark.parametrize(
    ("members", "count", "named", "oldest_first", "expected"),
    [
        pytest.param(NODES, 1, (), False, ["web-4"], id="newest"),
        pytest.param(NODES, 2, (), False, ["web-4", "web-3"], id="two newest, name breaks the tie"),
        pytest.param(NODES, 1, (), True, ["web-1"], id="heat: oldest"),
        pytest.param(NODES, 2, (), True, ["web-1", "web-2"], id="heat: two oldest"),
        pytest.param(NODES, 1, ("web-2",), False, ["web-2"], id="named"),
        pytest.param(NODES, 0, ("web-2",), False, ["web-2"], id="named raises the count"),
        pytest.param(NODES, 2, ("web-1",), False, ["web-1", "web-4"], id="named then newest"),
        pytest.param(NODES, 2, ("web-3", "web-1"), True, ["web-3", "web-1"], id="names keep their order"),
        pytest.param(NODES, 0, (), False, [], id="nothing"),
        pytest.param(
            [*NODES[:3], Member("web-9", at(5), failed=True)], 2, (), False, ["web-9", "web-3"],
            id="failed first, then newest",
        ),
        pytest.param(
            [*NODES[:3], Member("web-9", at(5), failed=True)], 2, (), True, ["web-9", "web-1"],
            id="heat: failed first, then oldest",
        ),
        pytest.param(
            [Member("b", at(0), failed=True), Member("a", at(9), failed=True), Member("c", at(1))],
            2, (), False, ["a", "b"], id="several failed, newest failed first",
        ),
        pytest.param(NODES, 4, (), False, ["web-4", "web-3", "web-2", "web-1"], id="all"),
    ],
)  # fmt: skip
def test_choose_victims(
    members: list[Member], count: int, named: tuple[str, ...], oldest_first: bool, expected: list[str]
) -> None:
    victims = choose_victims(members, count, named=named, oldest_first=oldest_first)
    assert [v.name for v in victims] == expected


@pytest.mark.parametrize(
    ("count", "named", "bounds", "error", "needle"),
    [
        (1, ("web-7",), None, Invalid, "no node named web-7"),
        (2, ("web-1", "web-1"), None, Invalid, "named twice"),
        (-1, (), None, Invalid, "negative"),
        (5, (), None, Conflict, "can not be removed"),
        (2, (), Bounds(3, 5), Conflict, "below the tier's min size 3"),
        (1, ("web-1", "web-2"), Bounds(3, 5), Conflict, "below the tier's min size 3"),
    ],
)
def test_choose_victims_refusals(
    count: int, named: tuple[str, ...], bounds: Bounds | None, error: type[Exception], needle: str
) -> None:
    with pytest.raises(error, match=needle):
        choose_victims(NODES, count, bounds, named=named)


def test_choose_victims_down_to_min_is_allowed() -> None:
    assert [v.name for v in choose_victims(NODES, 1, Bounds(3, 5))] == ["web-4"]


def test_choose_victims_refuses_duplicate_members() -> None:
    with pytest.raises(Invalid, match="not unique"):
        choose_victims([Member("a", T0), Member("a", at(1))], 1)


# --- thresholds ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "value", "threshold", "holds"),
    [
        (Comparison.GT, 81, 80, True),
        (Comparison.GT, 80, 80, False),
        (Comparison.GE, 80, 80, True),
        (Comparison.GE, 79.9, 80, False),
        (Comparison.LT, 19, 20, True),
        (Comparison.LT, 20, 20, False),
        (Comparison.LE, 20, 20, True),
        (Comparison.LE, 20.1, 20, False),
        (Comparison.EQ, 5, 5, True),
        (Comparison.EQ, 5.1, 5, False),
        (Comparison.NE, 5.1, 5, True),
        (Comparison.NE, 5, 5, False),
    ],
)
def test_comparison(op: Comparison, value: float, threshold: float, holds: bool) -> None:
    assert op.holds(value, threshold) is holds


def test_comparison_values_are_heats() -> None:
    assert {c.value for c in Comparison} == {"le", "ge", "eq", "lt", "gt", "ne"}


def s(second: float, value: float) -> Sample:
    return Sample(at(second), value)


RULE = ThresholdRule(Comparison.GT, 80.0, period=10, evaluation_periods=3)
NOW = at(30)


def test_period_averages_windows() -> None:
    samples = [
        s(0, 1000),  # exactly a whole window old: out
        s(0.5, 10),
        s(5, 20),  # period 0: (0, 10]
        s(10, 30),  # at the boundary: belongs to the older period (0, 10]
        s(15, 40),  # period 1
        s(25, 50),
        s(30, 70),  # at now: the newest period
        s(31, 999),  # in the future: out
    ]
    assert period_averages(samples, RULE, NOW) == (20.0, 40.0, 60.0)


@pytest.mark.parametrize(
    ("samples", "previous", "state", "value"),
    [
        pytest.param([s(5, 90), s(15, 85), s(25, 95)], AlarmState.OK, AlarmState.ALARM, 95.0, id="all breach"),
        pytest.param([s(5, 10), s(15, 20), s(25, 30)], AlarmState.ALARM, AlarmState.OK, 30.0, id="none breach"),
        pytest.param(
            [s(5, 10), s(15, 90), s(25, 95)], AlarmState.OK, AlarmState.OK, 95.0, id="mixed keeps previous ok"
        ),
        pytest.param(
            [s(5, 10), s(15, 90), s(25, 95)], AlarmState.ALARM, AlarmState.ALARM, 95.0,
            id="mixed keeps previous alarm",
        ),
        pytest.param(
            [s(5, 10), s(15, 90), s(25, 95)], AlarmState.INSUFFICIENT_DATA, AlarmState.ALARM, 95.0,
            id="mixed from unknown: the latest breaches",
        ),
        pytest.param(
            [s(5, 90), s(15, 95), s(25, 10)], AlarmState.INSUFFICIENT_DATA, AlarmState.OK, 10.0,
            id="mixed from unknown: the latest does not breach",
        ),
        pytest.param(
            [s(5, 90), s(25, 95)], AlarmState.ALARM, AlarmState.INSUFFICIENT_DATA, 95.0, id="a period has no data"
        ),
        pytest.param([], AlarmState.OK, AlarmState.INSUFFICIENT_DATA, None, id="no samples"),
        pytest.param(
            [s(5, 62), s(5, 100), s(15, 70), s(15, 100), s(25, 80), s(25, 90)], AlarmState.OK, AlarmState.ALARM,
            85.0, id="tier mean over nodes (81, 85, 85 all > 80)",
        ),
        pytest.param(
            [s(5, 80), s(15, 80), s(25, 80)], AlarmState.OK, AlarmState.OK, 80.0, id="equal is not gt",
        ),
    ],
)  # fmt: skip
def test_evaluate(
    samples: list[Sample], previous: AlarmState, state: AlarmState, value: float | None
) -> None:
    result = evaluate(samples, RULE, NOW, previous)
    assert result.state is state
    assert result.value == value
    assert result.alarming is (state is AlarmState.ALARM)
    assert len(result.averages) == 3


def test_evaluate_single_period_scale_in_rule() -> None:
    rule = ThresholdRule(Comparison.LT, 20.0, period=60)
    assert evaluate([s(-30, 5), s(0, 15)], rule, at(0)).state is AlarmState.ALARM
    assert evaluate([s(-30, 5), s(0, 45)], rule, at(0)).state is AlarmState.OK
    assert evaluate([s(-61, 5)], rule, at(0)).state is AlarmState.INSUFFICIENT_DATA


def test_evaluation_drives_a_decision() -> None:
    """The autoscaler's loop in one step: an alarm on the scale-out rule makes a SCALE decision."""
    result = evaluate([s(5, 90), s(15, 85), s(25, 95)], RULE, NOW)
    assert result.alarming
    decision = decide(1, Adjustment(50, PERCENT), Bounds(1, 4), CooldownState(), NOW)
    assert (decision.action, decision.target) == (Action.SCALE, 2)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"period": 0}, "period"),
        ({"period": -1}, "period"),
        ({"period": float("inf")}, "period"),
        ({"evaluation_periods": 0}, "evaluation_periods"),
        ({"threshold": float("nan")}, "threshold"),
    ],
)
def test_threshold_rule_validation(kwargs: dict[str, float], needle: str) -> None:
    base: dict[str, object] = {
        "comparison": Comparison.GT,
        "threshold": 80.0,
        "period": 10,
        "evaluation_periods": 1,
    }
    base.update(kwargs)
    with pytest.raises(Invalid, match=needle):
        ThresholdRule(**base)  # type: ignore[arg-type]
