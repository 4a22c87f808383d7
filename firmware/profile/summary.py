"""The one-screen summary that `tether check` prints for a valid profile."""
import json
import re

from agent.events import log_bytes
from firmware.airtime import estimate
from firmware.profile.chips import DRIVERS
from firmware.profile.errors import SECRET_SHOWN
from firmware.profile.units import format_duration, format_frequency, format_resolution, format_size


def redacted(compiled, secret_fields):
    """A copy of compiled with every value that came from secrets.yaml replaced by '***'."""
    copy = json.loads(json.dumps(compiled))
    for path in secret_fields:
        keys = [int(k) if k.isdigit() else k for k in re.findall(r"[^.\[\]]+", path)]
        target = copy
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = SECRET_SHOWN
    return copy


def shown(value, fmt=str):
    """A value through its formatter, unless it is a stand-in for a secret."""
    return value if value == SECRET_SHOWN else fmt(value)


def events_room(buffer_bytes):
    """' + 16KiB for events': the events' log, bounded apart from the buffer."""
    if buffer_bytes == SECRET_SHOWN:
        return ""
    return " + %s for events" % format_size(log_bytes(buffer_bytes))


def number(value):
    return shown(value, lambda v: "%g" % v)


def where(s, uarts):
    """Where a sensor's chip sits: 'i2c0 0x40', 'uart0 #1', 'pins 16/17', 'pin 32'; uarts are
    the ids of the UART buses, whose addresses are Modbus numbers."""
    if "adc" in s:
        adc = s["adc"]
        return "%s %s ch%s" % (adc["bus"], shown(adc["address"], hex), adc["channel"])
    if "pins" in s:
        return "pins %s" % "/".join(str(s["pins"][role]) for role in s["pins"])
    if "pin" in s:
        return "pin %s" % s["pin"]
    address = shown(s["address"], "#{}".format if s["bus"] in uarts else hex)
    channel = " ch%s" % s["channel"] if "channel" in s else ""
    return "%s %s%s" % (s["bus"], address, channel)


def behaviour(s):
    """Filters and thresholds in short form: 'median 5, 0..100; ink_low <15 (hyst 2)'."""
    f = s["filters"]
    parts = []
    if "median" in f:
        parts.append("median %s" % f["median"])
    if "deadband" in f:
        parts.append("deadband %s" % number(f["deadband"]))
    if "min" in f or "max" in f:
        parts.append("%s..%s" % (number(f["min"]) if "min" in f else "",
                                 number(f["max"]) if "max" in f else ""))
    thresholds = []
    for t in s["thresholds"]:
        limit = "<%s" % number(t["below"]) if "below" in t else ">%s" % number(t["above"])
        hysteresis = " (hyst %s)" % number(t["hysteresis"]) if t["hysteresis"] else ""
        thresholds.append("%s %s%s%s" % (t["event"], limit, hysteresis,
                                         " alarm" if t.get("alarm") else ""))
    return "; ".join(p for p in (", ".join(parts), ", ".join(thresholds)) if p) or "-"


def table(rows):
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return ["    " + "  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip()
            for row in rows]


def air(compiled):
    """Two lines: the batches, then the health reports (most of the bytes of a small profile,
    at the default of one every 5 min)."""
    e = estimate(compiled)
    return ["%s readings/day, %.1f batches/day, %s bytes/day" % (
        format(e["readings_per_day"], ","), e["batches_per_day"], format(e["bytes_per_day"], ",")),
        "%s health reports/day (every %s), about %s bytes/day" % (
            format(int(e["health_per_day"]), ",") if e["health_per_day"] == int(
                e["health_per_day"]) else "%.1f" % e["health_per_day"],
            format_duration(compiled["uplink"]["health_ms"]),
            format(e["health_bytes_per_day"], ","))]


def _clock(minutes):
    return shown(minutes, lambda m: "%02d:%02d" % divmod(m, 60))


def _plural(n, word):
    return "%s %s%s" % (shown(n), word, "" if n == 1 else "s")


def calibrations(sensors, uarts):
    """A line per chip whose sensors are calibrated: the figures as compiled, in the chip's
    order (a tare or a shunt mistyped is seen here, not in the readings weeks later)."""
    seen = {}
    for s in sensors:
        cal = s.get("calibration") or {}
        order = [name for _, name, _, _ in DRIVERS[s["driver"]]["calibration"] if name in cal]
        if not order:
            continue
        text = ", ".join("%s %s" % (k, shown(cal[k], number)) for k in order)
        seen.setdefault((s["driver"], where(s, uarts), text), []).append(s["name"])
    return ["  calibrate %s: %s" % (", ".join(names), text)
            for (_, _, text), names in seen.items()]


def _days(ms):
    """9.5d, not 228h; under a day as a duration."""
    return "%gd" % round(ms / 86400000.0, 1) if ms >= 86400000 else format_duration(int(ms))


def _zone(off, rule=None):
    """'UTC+01:00', or with a zone's rule its summer offset too: 'UTC+01:00, summer +02:00'."""
    def hm(m):
        return "%s%02d:%02d" % ("-" if m < 0 else "+", abs(m) // 60, abs(m) % 60)
    if rule is not None:
        from agent.tz import parse
        std, dst = parse(rule)[:2]
        if dst is not None:
            return "UTC%s, summer %s (%s)" % (hm(std // 60), hm(dst // 60), rule)
        off = std // 60
    return "UTC" if not off else "UTC" + hm(off)


def insight(s):
    """One line of what a sensor's insight is set to: the figures a maker checks (a tariff in
    the wrong unit, a schedule off by an hour) before boards carry them."""
    i = s["insight"]
    kind = i["type"]
    if kind == "consumable":
        # The lead time is not when it reorders: a forecast 1.9 x it (1.6 x while the rate is
        # young) is ("reorder 5d before empty" read as a reorder at a forecast of 5 days)
        from agent.insights.consumable import RESERVE, YOUNG
        lead = i["lead_time_ms"]
        # and the first week's rule: a low forecast with a wide band waited, unexplained
        text = "lead time %s: a reorder once the forecast is under %s (%s while its points " \
               "span under 3 weeks; in its first week, once the forecast and the slow end " \
               "of its band, multiplied, are under the lead time squared), a fit over %s" % (
                   shown(lead, format_duration), shown(lead, lambda v: _days(v * RESERVE)),
                   shown(lead, lambda v: _days(v * YOUNG)), shown(i["window_ms"], format_duration))
    elif kind == "adherence":
        # The zone too: "08:00" is UTC unless device.utc_offset says otherwise, and a dose an
        # hour off passed unseen. A dose is late until `late` after it or until the next
        # dose's window opens, whichever comes first.
        off = i.get("utc_offset_min", 0)
        early = i.get("early_ms", 0)
        if isinstance(i["pills"], list) and len(i["pills"]) == len(i["times_min"]):
            doses = ", ".join("%s at %s" % (_plural(n, "pill"), _clock(m))
                              for n, m in zip(i["pills"], i["times_min"]))
        else:
            doses = "%s at %s" % (_plural(i["pills"], "pill"),
                                  ", ".join(_clock(m) for m in i["times_min"]) or "no time")
        text = ("%s %s, window %s%s, late until %s after or the next dose's window; "
                "refill at %s days left" % (
                    doses, _zone(off, i.get("tz")),
                    shown(i["window_ms"], format_duration),
                    ", early from %s before" % shown(early, format_duration)
                    if early == SECRET_SHOWN or (i["window_ms"] != SECRET_SHOWN
                                                 and early > i["window_ms"]) else "",
                    shown(i["late_ms"], format_duration), number(i["refill_days"])))
    elif kind == "energy":
        # The report's time of day is the device's local time, as a dose time is.
        text = ("%s %s/kWh, %s g CO2/kWh, report at %s %s; cycles over %s W, standby under %s W; "
                "watch %s%s, learnt over %s; %s" % (
                    number(i["tariff"]), i["currency"], number(i["co2_g_per_kwh"]),
                    _clock(i["report_min"]), _zone(i.get("utc_offset_min", 0), i.get("tz")),
                    number(i["on_w"]), number(i["off_w"]), i["watch"],
                    " (a point: the median of %s cycles)" % i["batch"] if i["batch"] != 1 else "",
                    _plural(i["learn"], "point"), _plural(len(i["programmes"]), "programme")))
    else:
        text = ""
    return "%s: %s%s" % (s["name"], kind, ", " + text if text else "")


def summary(path, compiled, secret_fields):
    c = redacted(compiled, secret_fields)
    d, u, b, bt = c["device"], c["uplink"], c["buffer"], c["batch"]
    model = ' "%s"' % d["model"] if "model" in d else ""
    tls = ""
    if u["tls"] is True:
        tls = ", TLS" + (" with CA file" if "ca" in u else "")
        tls += ", client cert" if "cert" in u else ""
    login = ", login ***" if "username" in u or "password" in u else ""
    if "password" in u and u["tls"] is False:
        # refused nowhere (a broker on a closed LAN), but said: anyone on the way reads it
        login += " sent in clear text (mqtt://; mqtts:// encrypts it)"
    lines = [
        "%s: ok" % path,
        "  device    %s%s on %s" % (d["id"], model, c.get("chip") or c["platform"]),
        "  broker    %s:%s%s%s, client id %s" % (u["host"], u["port"], tls, login, u["client_id"]),
        "  topics    %s/%s/up/..., encoding %s%s" % (
            u["prefix"], d["id"], u["encoding"], " + deflate" if u["deflate"] is True else ""),
        "  batches   up to %s readings, %s or %s old" % (
            bt["max_readings"], shown(bt["max_bytes"], format_size),
            shown(bt["max_age_ms"], format_duration)),
        "  buffer    %s%s, %s%s; RAM holds up to %s readings for %s" % (
            b["storage"], " at %s" % b["path"] if b["storage"] == "flash" else "",
            shown(b["max_bytes"], format_size), events_room(b["max_bytes"]), b["ram_readings"],
            shown(b["flush_ms"], format_duration)),
    ]
    if "wifi" in c:
        w = c["wifi"]
        time_from = ""
        if c["platform"] == "esp32":    # a Pi keeps its own time (systemd-timesyncd)
            time_from = ", time from %s" % (", ".join(w["ntp"]) if w.get("ntp")
                                            else "pool.ntp.org (ntptime's own)")
        lines.insert(2, "  wifi      %s, %s%s" % (
            w["ssid"], "with a password" if "password" in w else "open network", time_from))
    elif c["platform"] == "esp32":  # build refuses it: check said ok
        lines.insert(2, "  wifi      none: add 'wifi:' before `tether build` (a board joins a "
                        "network with it)")
    for bus in c["buses"]:
        first, second = ("sda", "scl") if bus["type"] == "i2c" else ("tx", "rx")
        pins = " %s %s %s %s" % (first, bus[first], second, bus[second]) if first in bus else ""
        lines.append("  bus       %s: %s%s, %s%s" % (
            bus["id"], bus["type"], pins,
            shown(bus["frequency"], format_frequency) if bus["type"] == "i2c"
            else "%s baud" % bus["baud"], ", on %s" % bus["port"] if bus.get("port") else ""))
    lines.append("  sensors   %d (channel numbers on the wire follow this order)"
                 % len(c["sensors"]))
    rows = [("#", "name", "driver", "quantity", "where", "every", "resolution", "unit",
             "filters; thresholds")]
    uarts = [bus["id"] for bus in c["buses"] if bus["type"] == "uart"]
    for i, s in enumerate(c["sensors"]):
        rows.append((i, s["name"], s["driver"], s["quantity"], where(s, uarts),
                     shown(s["interval_ms"], format_duration),
                     shown(s["resolution"], format_resolution), s["unit"] or "-", behaviour(s)))
    lines += table(rows)
    lines += calibrations(c["sensors"], uarts)
    for s in c["sensors"]:
        if "insight" in s:
            lines.append("  insight   " + insight(s))
    batches, healths = air(compiled)
    lines.append("  on air    " + batches)
    lines.append("            " + healths)
    return "\n".join(lines)
