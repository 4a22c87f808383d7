"""The energy insight in a profile (agent/insights/energy.py): an appliance's cycles from its
power, standby, a daily energy report, maintenance due when its cycles drift."""
from agent.insights.energy import (MAX_INTERVAL_MS, MOST, Z_CLIP, currency_ok, shown_ok,
                                   single_spike_limit)
from firmware.profile.errors import Invalid, at, expected, shown
from firmware.profile.rules import (REQUIRED, choice, clock_time, duration, integer, list_of,
                                    number, section, text)
from firmware.profile.units import DAY, HOUR, MINUTE, SECOND, format_duration

# What the maintenance chart watches, per cycle (docs/insights/energy.md): energy (Wh) and peak
# (W) as they are; reversal, a drum motor's reversal spike over its turning power; capacity, a
# thermostat-cycled compressor's 1/on + 1/off (per hour). Each with the words a product manager
# reads (the console's rows, the simulator's plots).
WATCH_NAMES = {"energy": "energy per cycle", "peak": "peak power per cycle",
               "reversal": "drum motor's reversal spike", "capacity": "compressor's cycling"}
WATCH = tuple(WATCH_NAMES)


def programme_name(ctx, node):
    """1 to 32 printable characters: every cycle event carries it to a dashboard (an empty one
    named cycles "", told from none by nobody)."""
    value = text(ctx, node)
    if not shown_ok(value, 32):
        raise Invalid(expected("a programme's name of 1 to 32 printable characters like "
                               "'eco 40'", node))
    return value


def signature(ctx, node):
    return section(ctx, node, [
        ("name", "name", programme_name, REQUIRED),
        ("duration", "duration_ms", duration(MINUTE, DAY), REQUIRED),
        ("energy", "energy_wh", number(above=0), REQUIRED),
    ])


def currency(ctx, node):
    """1 to 8 characters, as the insight command's `set` takes it: it goes in every report."""
    value = text(ctx, node)
    if not currency_ok(value):
        raise Invalid(expected("a currency of 1 to 8 printable characters like 'EUR'", node))
    return value


QUANTITIES = ("power",)
MAX_INTERVAL_MS = MAX_INTERVAL_MS  # the sensor's longest interval (firmware/profile/schema.py)
FIELDS = [
    ("cycle_above", "on_w", number(above=0, at_most=MOST["cycle_above"]), 10),
    ("standby_below", "off_w", number(above=0, at_most=MOST["standby_below"]), 5),
    ("cycle_end", "end_ms", duration(10 * SECOND, HOUR), 3 * MINUTE),
    ("tariff", "tariff", number(at_least=0, at_most=MOST["tariff"]), 0),
    ("currency", "currency", currency, "EUR"),
    ("grid_intensity", "co2_g_per_kwh", number(at_least=0, at_most=MOST["grid_intensity"]), 0),
    ("report_at", "report_min", clock_time, 0),
    ("programmes", "programmes", list_of(signature), []),
    ("learn", "learn", integer(3, 200), 20),
    ("watch", "watch", choice(WATCH), "energy"),
    ("batch", "batch", integer(1, 64), 1),
    ("drift_slack", "drift_k", number(above=0, below=Z_CLIP), 1),
    ("drift_limit", "drift_h", number(above=0, at_most=MOST["drift_limit"]), 6),
    ("motor_above", "motor_lo_w", number(above=0, at_most=MOST["cycle_above"]), 30),
    ("motor_below", "motor_hi_w", number(above=0, at_most=MOST["cycle_above"]), 1000),
]


def check(ctx, node, out):
    # A key missing from out was refused on its own: comparing it again would only repeat that
    if "off_w" in out and "on_w" in out and out["off_w"] >= out["on_w"]:
        _below(ctx, node, "standby_below", out["off_w"], "cycle_above", out["on_w"])
    if "drift_k" in out and "drift_h" in out and out["drift_h"] <= single_spike_limit(
            out["drift_k"]):
        where = node.value.get("drift_limit") or node.value.get("drift_slack") or node
        ctx.problems.append(at(where, expected(
            "drift_limit above %s (3 - drift_slack): at or under it one odd cycle alone raises "
            "maintenance_due" % single_spike_limit(out["drift_k"]), where)))
    if "motor_lo_w" in out and "motor_hi_w" in out and out["motor_lo_w"] >= out["motor_hi_w"]:
        _below(ctx, node, "motor_above", out["motor_lo_w"], "motor_below", out["motor_hi_w"])
    g = out.get("co2_g_per_kwh")
    if g is not None and 0 < g < 1 and node.value.get("grid_intensity") is not None:
        # no grid runs under 1 g a kWh (hydro, nuclear: 10-30): kg for g
        where = node.value["grid_intensity"]
        ctx.problems.append(at(where, expected(
            "grams of CO2 per kWh (a grid's are 10-1200; %s kg is %g g)"
            % (shown(where), g * 1000), where)))
    programmes = node.value.get("programmes")
    if programmes is not None and programmes.tag == "seq":
        named = set()
        for p, pn in zip(out.get("programmes") or (), programmes.value):
            if p and "name" in p and pn.tag == "map":
                if p["name"] in named:      # a cycle is named after one: which, none could say
                    where = pn.value["name"]
                    ctx.problems.append(at(where, expected(
                        "a name no other programme has", where)))
                named.add(p["name"])
    if "off_w" in out and programmes is not None and programmes.tag == "seq":
        for p, pn in zip(out.get("programmes") or (), programmes.value):
            if not (p and "energy_wh" in p and "duration_ms" in p and pn.tag == "map"):
                continue  # refused on its own already
            mean = p["energy_wh"] * 3600000.0 / p["duration_ms"]
            if mean < out["off_w"] and "energy" in pn.value:
                # a cycle draws at least standby_below the while: no cycle could match it
                where = pn.value["energy"]
                ctx.problems.append(at(where, expected(
                    "the energy of a cycle in Wh: %s over %s is %.3g W on average, under "
                    "standby_below (%s W), so no cycle could match it (kWh? %s kWh is %s Wh)"
                    % (shown(where), format_duration(p["duration_ms"]), mean, out["off_w"],
                       shown(where), "%g" % (p["energy_wh"] * 1000)), where)))


def _below(ctx, node, low, low_w, high, high_w):
    """The power `low` is not under `high`: said at the key the profile wrote, with the other's
    value (`cycle_above: 4` alone was told as standby_below's fault, with 4 as what it got)."""
    if node.value.get(low) is not None:
        where, what = node.value[low], "a power under %s (%s W%s)" % (
            high, high_w, "" if node.value.get(high) is not None else ", its default")
    else:
        where, what = node.value[high], "a power above %s (%s W, its default)" % (low, low_w)
    ctx.problems.append(at(where, expected(what, where)))
