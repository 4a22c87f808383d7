"""The adherence insight in a profile (agent/insights/adherence.py): doses from a pill count on
a load cell, judged against a schedule; refills."""
from agent.insights.adherence import MAX_TIMES, lateness, spacing
from firmware.profile.errors import at
from firmware.profile.rules import REQUIRED, clock_time, duration, integer, list_of
from firmware.profile.units import DAY, HOUR, MINUTE, format_duration


def schedule(ctx, node):
    # At most 24: what `set` and a snapshot take (agent/insights/adherence.py).
    times = list_of(clock_time, 1, "a list of times of day like ['08:00', '20:00']",
                    MAX_TIMES)(ctx, node)
    # A time in error was told already: None leaves the checks against the times (pills) out.
    return None if None in times else sorted(times)


def pills(ctx, node):
    """One count for every dose, or a list: one per dose time, in the schedule's order as
    written (check() puts it in the compiled times' order)."""
    if node.tag == "seq":
        return list_of(integer(1, 20), 1, "a list of 1 to %d pill counts, one per dose time"
                       % MAX_TIMES, MAX_TIMES)(ctx, node)
    return integer(1, 20, "an integer from 1 to 20, or a list of them (one per dose time)")(
        ctx, node)


def days(ctx, node):
    """A duration like '5d' as days (whole days as an int)."""
    ms = duration(HOUR, 60 * DAY)(ctx, node)
    return ms // DAY if ms % DAY == 0 else ms / DAY


QUANTITIES = ("count",)
FIELDS = [
    ("schedule", "times_min", schedule, REQUIRED),
    ("window", "window_ms", duration(5 * MINUTE, 4 * HOUR), 30 * MINUTE),
    # How early a take still answers its dose (status early); the window when shorter.
    ("early", "early_ms", duration(5 * MINUTE, 4 * HOUR), 30 * MINUTE),
    ("late", "late_ms", duration(10 * MINUTE, 12 * HOUR), 5 * HOUR),
    ("pills", "pills", pills, 1),
    ("refill_below", "refill_days", days, 5),
    # Longer than a cap set down beside the bottle stays off (a minute or few): that is no dose.
    ("settle", "settle_ms", duration(0, HOUR), 5 * MINUTE),
]


def max_interval(insight):
    """(the longest interval, why): a dose is dated by the first reading that shows it."""
    window = insight.get("window_ms", 30 * MINUTE)
    return window // 4, ("a dose is dated by the first reading that shows it, and readings "
                         "further apart than a quarter of the window (%s) put a dose taken on "
                         "time late" % format_duration(window))


def check(ctx, node, out):
    times = out.get("times_min")
    twice = [t for i, t in enumerate(times or ()) if t in times[:i]]
    if twice:
        ctx.problems.append(at(node.value["schedule"], "expected each time once, got %02d:%02d "
                                                       "twice" % (twice[0] // 60, twice[0] % 60)))
        return
    counts = out.get("pills")
    if isinstance(counts, list) and times:
        if len(counts) != len(times) or None in counts:
            if None not in counts:
                ctx.problems.append(at(node.value["pills"], "expected one count of pills per "
                                       "dose time (%d), got %d" % (len(times), len(counts))))
            return
        # The compiled times are sorted: the counts follow their own times.
        written = [clock_time(ctx, item) for item in node.value["schedule"].value]
        out["pills"] = [n for _, n in sorted(zip(written, counts))]
    problem = spacing(times, out.get("window_ms", 30 * MINUTE), out.get("early_ms", 0)) \
        if times else None
    if problem:
        ctx.problems.append(at(node.value.get("early") or node.value.get("window")
                               or node.value["schedule"], problem))
    if "late_ms" in out and "window_ms" in out:
        problem = lateness(out["late_ms"], out["window_ms"])
        if problem:
            ctx.problems.append(at(node.value.get("late") or node.value.get("window") or node,
                                   problem))
