"""Elasticity arithmetic, pure: Heat's new-capacity rules, cooldowns, scale-in victims, threshold alarms.

Facts from openstack/heat 526defd06 (docs/architecture.md, "PaaS elasticity rules"):
- heat/scaling/scalingutil.py:25-61 computes the new capacity; a percent delta under 1 in size
  rounds away from zero, a larger one towards zero; `min_adjustment_step` then raises the size of
  the step; the result is clamped to [min, max] (max first, then min).
- scaling_policy.py:116-124 allows `min_adjustment_step` only with percent_change_in_capacity.
- aws/autoscaling/autoscaling_group.py:290-355 (`adjust`) and heat/scaling/cooldown.py:36-100: a
  signal while a scale runs or before `cooldown_end` does nothing; no change in size (at max or
  min) does nothing and starts no cooldown; a cooldown starts at the END of a resize, only if the
  size changed, and never moves an earlier-set end backwards.
- heat/common/grouputils.py:114-127 with heat/scaling/template.py:41: Heat removes FAILED members
  first, then the oldest (creation time, then name). Cumulo removes a named node when asked, else
  failed nodes first, then the NEWEST (see `choose_victims`).

Nothing here does I/O or reads a clock: the caller passes `now`.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from cumulo.errors import Conflict, Invalid


class AdjustmentType(enum.StrEnum):
    """Heat's `adjustment_type` values (scalingutil.py:15-17)."""

    CHANGE_IN_CAPACITY = "change_in_capacity"
    EXACT_CAPACITY = "exact_capacity"
    PERCENT_CHANGE_IN_CAPACITY = "percent_change_in_capacity"


@dataclass(frozen=True)
class Bounds:
    """A tier's size limits, Heat's `min_size`/`max_size` (both ≥ 0, min ≤ max)."""

    min_size: int
    max_size: int

    def __post_init__(self) -> None:
        if self.min_size < 0 or self.max_size < 0:
            raise Invalid("min and max sizes must be zero or more")
        if self.min_size > self.max_size:
            raise Invalid(f"min size {self.min_size} can not be greater than max size {self.max_size}")

    def clamp(self, size: int) -> int:
        """Heat clamps to max first, then to min (scalingutil.py:55-61); with min ≤ max the order is moot."""
        return max(self.min_size, min(self.max_size, size))

    def check_desired(self, desired: int) -> None:
        if not self.min_size <= desired <= self.max_size:
            raise Invalid(
                f"desired size {desired} must be between min {self.min_size} and max {self.max_size}"
            )


@dataclass(frozen=True)
class Adjustment:
    """What one policy signal asks for: Heat's `scaling_adjustment`, `adjustment_type`, `min_adjustment_step`."""

    adjustment: float
    type: AdjustmentType = AdjustmentType.CHANGE_IN_CAPACITY
    min_adjustment_step: int | None = None

    def __post_init__(self) -> None:
        if not math.isfinite(self.adjustment):
            raise Invalid("the scaling adjustment must be a finite number")
        if self.type is not AdjustmentType.PERCENT_CHANGE_IN_CAPACITY:
            if self.min_adjustment_step is not None:
                raise Invalid(
                    "min_adjustment_step is allowed only with adjustment type percent_change_in_capacity"
                )
            if self.adjustment != int(self.adjustment):
                raise Invalid(f"a {self.type.value} adjustment must be a whole number, not {self.adjustment}")
        if self.min_adjustment_step is not None and self.min_adjustment_step < 0:
            raise Invalid("min_adjustment_step must be zero or more")


def percent_delta(current: int, percent: float) -> int:
    """Heat's rounding of `current * percent / 100`: under 1 in size away from zero, else towards zero."""
    delta = current * percent / 100.0
    if math.fabs(delta) < 1.0:
        return math.ceil(delta) if delta > 0.0 else math.floor(delta)
    return math.floor(delta) if delta > 0.0 else math.ceil(delta)


def _with_min_step(step: int, requested: float, min_step: int | None) -> int:
    """Raise the step's size to `min_step`, in the direction the policy asked for.

    Heat takes the direction from the rounded step, so a zero step (0 % of an empty tier) becomes
    -min_step; Cumulo takes it from the requested percentage, so +100 % with a step of 2 grows an
    empty tier by 2, and a 0 % request stays 0.
    """
    if not min_step or min_step <= abs(step):
        return step
    if requested > 0:
        return min_step
    if requested < 0:
        return -min_step
    return step


def unbounded_capacity(current: int, adj: Adjustment) -> int:
    """The size a signal asks for before the min/max clamp."""
    if current < 0:
        raise Invalid("the current size can not be negative")
    if adj.type is AdjustmentType.CHANGE_IN_CAPACITY:
        return current + int(adj.adjustment)
    if adj.type is AdjustmentType.EXACT_CAPACITY:
        return int(adj.adjustment)
    step = percent_delta(current, adj.adjustment)
    return current + _with_min_step(step, adj.adjustment, adj.min_adjustment_step)


def new_capacity(current: int, adj: Adjustment, bounds: Bounds) -> int:
    """Heat's `calculate_new_capacity`: the adjusted size clamped to the bounds."""
    return bounds.clamp(unbounded_capacity(current, adj))


# ---------------------------------------------------------------------------------------------
# Cooldown and the decision on a signal


def effective_cooldown(policy_cooldown: float | None, group_cooldown: float | None) -> float:
    """The policy's cooldown if set, else the group's (autoscaling_group.py:308-309); None or < 0 is 0
    (cooldown.py:31-34)."""
    chosen = policy_cooldown if policy_cooldown is not None else group_cooldown
    if chosen is None or not math.isfinite(chosen):
        return 0.0
    return max(0.0, float(chosen))


@dataclass(frozen=True)
class CooldownState:
    """What Heat keeps in the group's metadata: a scale running, and when the cooldown ends."""

    scaling_in_progress: bool = False
    cooldown_end: datetime | None = None

    def in_cooldown(self, now: datetime) -> bool:
        """Heat compares `now < cooldown_end` (cooldown.py:57): at the end instant the group may scale."""
        return self.cooldown_end is not None and now < self.cooldown_end


def start_scaling(state: CooldownState) -> CooldownState:
    """Mark a scale as running (cooldown.py:68), after `decide` said SCALE."""
    if state.scaling_in_progress:
        raise Conflict("a scale of this tier is already running")
    return replace(state, scaling_in_progress=True)


def finish_scaling(
    state: CooldownState, now: datetime, cooldown: float | None, size_changed: bool
) -> CooldownState:
    """End a scale at `now` (cooldown.py:81-100): always clears the running flag; only a resize that
    changed the size starts a cooldown, `now + cooldown`, never earlier than an end already set.
    A failed resize passes size_changed=False. A finished deploy (Heat: group create/update
    complete, autoscaling_group.py:226-244) also calls this with size_changed=True."""
    cooldown_end = state.cooldown_end
    if size_changed:
        end = now + timedelta(seconds=effective_cooldown(cooldown, None))
        cooldown_end = end if cooldown_end is None else max(cooldown_end, end)
    return CooldownState(scaling_in_progress=False, cooldown_end=cooldown_end)


class Action(enum.StrEnum):
    SCALE = "scale"
    NO_ACTION = "no_action"


class Reason(enum.StrEnum):
    """Why a signal acted or not; the caller records it in the tier's event."""

    SCALING = "scaling"  # acted
    SCALING_IN_PROGRESS = "scaling_in_progress"  # Heat: "due to scaling activity"
    NOT_READY = "not_ready"  # Heat: group status not COMPLETE
    AT_MAX = "at_max"
    AT_MIN = "at_min"
    NO_CHANGE = "no_change"  # e.g. exact_capacity equal to the size
    COOLDOWN = "cooldown"  # Heat: "due to cooldown"


@dataclass(frozen=True)
class Decision:
    """The outcome of one signal. `target` is the size to resize to (== current when no action)."""

    action: Action
    reason: Reason
    current: int
    target: int
    cooldown_end: datetime | None = None

    @property
    def acts(self) -> bool:
        return self.action is Action.SCALE

    def describe(self) -> str:
        """A short human sentence for the event record."""
        if self.acts:
            return f"scaling from {self.current} to {self.target}"
        if self.reason is Reason.COOLDOWN and self.cooldown_end is not None:
            return f"no action: cooldown until {self.cooldown_end.isoformat()}"
        return {
            Reason.SCALING_IN_PROGRESS: "no action: a scale is already running",
            Reason.NOT_READY: "no action: the tier is not ready",
            Reason.AT_MAX: f"no action: already at max size {self.current}",
            Reason.AT_MIN: f"no action: already at min size {self.current}",
            Reason.NO_CHANGE: f"no action: the size stays {self.current}",
        }.get(self.reason, f"no action: {self.reason.value}")


def decide(
    current: int,
    adj: Adjustment,
    bounds: Bounds,
    state: CooldownState,
    now: datetime,
    *,
    ready: bool = True,
) -> Decision:
    """Heat's `adjust` order (autoscaling_group.py:294-311, cooldown.py:36-69): not ready, then no
    change in size, then a running scale, then the cooldown; otherwise SCALE. A no-action decision
    changes no state: nothing is queued, the next signal after the cooldown acts."""
    if not ready:
        return Decision(Action.NO_ACTION, Reason.NOT_READY, current, current)
    wanted = unbounded_capacity(current, adj)
    target = bounds.clamp(wanted)
    if target == current:
        if wanted > current and current >= bounds.max_size:
            reason = Reason.AT_MAX
        elif wanted < current and current <= bounds.min_size:
            reason = Reason.AT_MIN
        else:
            reason = Reason.NO_CHANGE
        return Decision(Action.NO_ACTION, reason, current, current)
    if state.scaling_in_progress:
        return Decision(Action.NO_ACTION, Reason.SCALING_IN_PROGRESS, current, current)
    if state.in_cooldown(now):
        return Decision(Action.NO_ACTION, Reason.COOLDOWN, current, current, state.cooldown_end)
    return Decision(Action.SCALE, Reason.SCALING, current, target)


# ---------------------------------------------------------------------------------------------
# Scale-in victims


@dataclass(frozen=True)
class Member:
    """One node of a tier, as the victim choice sees it."""

    name: str
    created_at: datetime
    failed: bool = False


def choose_victims(
    members: Sequence[Member],
    count: int,
    bounds: Bounds | None = None,
    *,
    named: Sequence[str] = (),
    oldest_first: bool = False,
) -> list[Member]:
    """The `count` nodes a scale-in removes.

    Named nodes go first (Pegasus's DELETE tierInstance/{name}); an unknown or repeated name is
    Invalid. Then, as Heat, failed nodes first; then the newest (creation time, then name, the later
    first), unless `oldest_first`, Heat's own order. The newest is Cumulo's default: a scale-in
    undoes the latest scale-out and keeps the tier's first, fully installed nodes, those the template
    image and the users' early references come from. Going below `bounds.min_size` is a Conflict.
    """
    if count < 0:
        raise Invalid("the number of nodes to remove can not be negative")
    by_name = {m.name: m for m in members}
    if len(by_name) != len(members):
        raise Invalid("the tier's node names are not unique")
    if len(set(named)) != len(named):
        raise Invalid("a node is named twice")
    unknown = [n for n in named if n not in by_name]
    if unknown:
        raise Invalid(f"no node named {', '.join(sorted(unknown))} in this tier")
    count = max(count, len(named))
    if count > len(members):
        raise Conflict(f"the tier has {len(members)} nodes, {count} can not be removed")
    if bounds is not None and len(members) - count < bounds.min_size:
        raise Conflict(
            f"removing {count} of {len(members)} nodes goes below the tier's min size {bounds.min_size}"
        )
    chosen = [by_name[n] for n in named]
    rest = [m for m in members if m.name not in set(named)]
    if oldest_first:
        rest.sort(key=lambda m: (not m.failed, m.created_at, m.name))
    else:
        rest.sort(key=lambda m: (m.created_at, m.name), reverse=True)
        rest.sort(key=lambda m: not m.failed)  # stable: failed first, newest first within each
    return chosen + rest[: count - len(chosen)]


# ---------------------------------------------------------------------------------------------
# Metric thresholds (the alarm side: Aodh's threshold rule, as Heat's OS::Aodh::Alarm sets it)


class Comparison(enum.StrEnum):
    """The comparison operators of Heat's alarms (alarm_base.py:212-213)."""

    GT = "gt"
    GE = "ge"
    LT = "lt"
    LE = "le"
    EQ = "eq"
    NE = "ne"

    def holds(self, value: float, threshold: float) -> bool:
        match self:
            case Comparison.GT:
                return value > threshold
            case Comparison.GE:
                return value >= threshold
            case Comparison.LT:
                return value < threshold
            case Comparison.LE:
                return value <= threshold
            case Comparison.EQ:
                return value == threshold
            case Comparison.NE:
                return value != threshold


class AlarmState(enum.StrEnum):
    ALARM = "alarm"
    OK = "ok"
    INSUFFICIENT_DATA = "insufficient data"


@dataclass(frozen=True)
class Sample:
    """One reading of the metric (a node's CPU or memory percent) at a time."""

    at: datetime
    value: float


@dataclass(frozen=True)
class ThresholdRule:
    """Breach when the average of each of the last `evaluation_periods` periods compares true."""

    comparison: Comparison
    threshold: float
    period: float  # seconds
    evaluation_periods: int = 1

    def __post_init__(self) -> None:
        if not (math.isfinite(self.period) and self.period > 0):
            raise Invalid("the period must be a positive number of seconds")
        if self.evaluation_periods < 1:
            raise Invalid("evaluation_periods must be at least 1")
        if not math.isfinite(self.threshold):
            raise Invalid("the threshold must be a finite number")


@dataclass(frozen=True)
class Evaluation:
    """The alarm state, the per-period averages (oldest first; None where a period had no sample) and
    the latest average, the value an event records."""

    state: AlarmState
    averages: tuple[float | None, ...]
    value: float | None

    @property
    def alarming(self) -> bool:
        return self.state is AlarmState.ALARM


def period_averages(
    samples: Sequence[Sample], rule: ThresholdRule, now: datetime
) -> tuple[float | None, ...]:
    """The mean of the samples in each period of the window ending at `now`, oldest period first.

    Period i covers (now - (n-i)·period, now - (n-i-1)·period]: a sample at `now` counts, one exactly
    a whole window old does not. Samples from every node of a tier go into the same mean.
    """
    n = rule.evaluation_periods
    sums = [0.0] * n
    counts = [0] * n
    window = rule.period * n
    for sample in samples:
        age = (now - sample.at).total_seconds()
        if age < 0 or age >= window:
            continue
        index = n - 1 - int(age // rule.period)
        sums[index] += sample.value
        counts[index] += 1
    return tuple(s / c if c else None for s, c in zip(sums, counts, strict=True))


def evaluate(
    samples: Sequence[Sample],
    rule: ThresholdRule,
    now: datetime,
    previous: AlarmState = AlarmState.INSUFFICIENT_DATA,
) -> Evaluation:
    """ALARM when every period breaches, OK when none does, INSUFFICIENT_DATA when a period has no
    sample. When the periods disagree the previous state stays, unless it was INSUFFICIENT_DATA: then
    the latest period's side wins (Aodh's trending state, aodh/evaluator/threshold.py:109-119,151-153
    at a52eaa00). Stricter than Aodh: it takes the last N periods that have data within N+1
    (`look_back`, :58,67); here each of the last N periods needs a sample."""
    averages = period_averages(samples, rule, now)
    latest = averages[-1]
    if any(a is None for a in averages):
        return Evaluation(AlarmState.INSUFFICIENT_DATA, averages, latest)
    breaches = [rule.comparison.holds(a, rule.threshold) for a in averages if a is not None]
    if all(breaches):
        state = AlarmState.ALARM
    elif not any(breaches):
        state = AlarmState.OK
    elif previous is AlarmState.INSUFFICIENT_DATA:
        state = AlarmState.ALARM if breaches[-1] else AlarmState.OK
    else:
        state = previous
    return Evaluation(state, averages, latest)


# ---------------------------------------------------------------------------------------------
# Tier scaling policies (graph.py's normalised policy shape)

METRICS = ("cpu", "memory")  # percent of the flavor's vCPUs / of the server's memory limit
STATISTICS = ("avg",)
POLICY_COMPARISONS = ("gt", "ge", "lt", "le")
MAX_PERIOD = 86400.0
MAX_EVALUATION_PERIODS = 100


def _number(policy: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> float | None:
    value = policy.get(key)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Invalid(f"{where}: {key} must be a number, not {value!r}")
    return float(value)


def _whole(policy: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> int | None:
    value = _number(policy, key, where, required=required)
    if value is not None and value != int(value):
        raise Invalid(f"{where}: {key} must be a whole number, not {policy.get(key)!r}")
    return None if value is None else int(value)


def validate_policy(policy: Mapping[str, Any], *, where: str = "scaling policy") -> None:
    """THE check of one normalised scaling policy (graph.py's shape) the catalogue calls; Invalid names
    the field and the rule. Heat's rules (scaling_policy.py:116-124: min_adjustment_step only with
    percent_change_in_capacity; a whole adjustment otherwise) and Aodh's (a positive period, at least
    one evaluation period), plus Cumulo's: metric cpu or memory, statistic avg, comparison gt/ge/lt/le,
    threshold a percentage 0..100, period up to a day, cooldown zero or more."""
    if not isinstance(policy, Mapping):
        raise Invalid(f"{where}: a scaling policy must be an object")
    name = policy.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 255:
        raise Invalid(f"{where}: a scaling policy needs a name (1 to 255 characters)")
    where = f"{where} {name}"
    if policy.get("metric") not in METRICS:
        raise Invalid(f"{where}: metric must be one of {', '.join(METRICS)}, not {policy.get('metric')!r}")
    if policy.get("statistic", "avg") not in STATISTICS:
        raise Invalid(f"{where}: statistic must be avg, not {policy.get('statistic')!r}")
    if policy.get("comparison") not in POLICY_COMPARISONS:
        raise Invalid(
            f"{where}: comparison must be one of {', '.join(POLICY_COMPARISONS)}, not {policy.get('comparison')!r}"
        )
    threshold = _number(policy, "threshold", where)
    if threshold is None or not 0.0 <= threshold <= 100.0:
        raise Invalid(f"{where}: threshold is a percentage, between 0 and 100, not {policy.get('threshold')!r}")
    period = _number(policy, "period", where)
    if period is None or not 0.0 < period <= MAX_PERIOD:
        raise Invalid(f"{where}: period must be more than 0 and at most {int(MAX_PERIOD)} seconds")
    periods = _whole(policy, "evaluation_periods", where)
    if periods is None or not 1 <= periods <= MAX_EVALUATION_PERIODS:
        raise Invalid(f"{where}: evaluation_periods must be between 1 and {MAX_EVALUATION_PERIODS}")
    cooldown = _number(policy, "cooldown", where, required=False)
    if cooldown is not None and not 0.0 <= cooldown <= MAX_PERIOD:
        raise Invalid(f"{where}: cooldown must be between 0 and {int(MAX_PERIOD)} seconds")
    try:
        policy_adjustment(policy)
    except Invalid as exc:
        raise Invalid(f"{where}: {exc}") from None


def validate_policies(policies: Sequence[Mapping[str, Any]], *, where: str = "tier") -> None:
    """Every policy of a tier (validate_policy), with names unique in the tier."""
    seen: set[str] = set()
    for policy in policies:
        validate_policy(policy, where=f"{where}: scaling policy")
        if policy["name"] in seen:
            raise Invalid(f"{where}: two scaling policies are named {policy['name']!r}")
        seen.add(policy["name"])


def policy_adjustment(policy: Mapping[str, Any]) -> Adjustment:
    """The Adjustment a (valid) policy asks for."""
    try:
        type_ = AdjustmentType(str(policy.get("adjustment_type") or AdjustmentType.CHANGE_IN_CAPACITY.value))
    except ValueError:
        raise Invalid(
            f"adjustment_type must be one of {', '.join(t.value for t in AdjustmentType)}, "
            f"not {policy.get('adjustment_type')!r}"
        ) from None
    adjustment = _number(policy, "scaling_adjustment", "policy")
    step = _whole(policy, "min_adjustment_step", "policy", required=False)
    return Adjustment(float(adjustment or 0.0), type_, step)


def policy_rule(policy: Mapping[str, Any]) -> ThresholdRule:
    """The alarm rule a (valid) policy sets."""
    return ThresholdRule(Comparison(str(policy["comparison"])), float(policy["threshold"]),
                         float(policy["period"]), int(policy.get("evaluation_periods") or 1))
