"""An insight event as a sentence, as the device page lists it: "Empty in about 13.6 days (12.9
to 20.9); 27 % left, using 2.1 % a day", not "high_days 20.9 level 27.1 low_days 12.9 ...".
Its fields as sent stay in the row's tooltip. The events and their fields: docs/insights/."""
import time

from firmware.profile.insights.energy import WATCH_NAMES


def _finite(v):
    return not isinstance(v, bool) and isinstance(v, (int, float)) and v == v \
        and abs(v) != float("inf")


def _n(v, unit="", digits=1):
    """A number as a person reads it, or "?" for one that is not there (a field is any JSON
    value a device sent)."""
    if not _finite(v):
        return "?"
    text = ("%d" % v) if isinstance(v, int) or v == int(v) and abs(v) >= 10 else (
        "%.*f" % (digits, v)).rstrip("0").rstrip(".")
    return text + unit


def duration(ms):
    """'2 d 5 h', '3 h 20 min', '12 min', '40 s': one way everywhere on the console."""
    if not _finite(ms) or ms < 0:
        return ""
    s = int(ms // 1000)
    if s >= 86400:
        return "%d d %d h" % (s // 86400, s % 86400 // 3600)
    if s >= 3600:
        return "%d h %02d min" % (s // 3600, s % 3600 // 60)
    if s >= 60:
        return "%d min" % (s // 60)
    return "%d s" % s


def _clock(t):
    if isinstance(t, bool) or not isinstance(t, int):
        return None
    try:
        return time.strftime("%H:%M", time.gmtime(t / 1000))
    except (OverflowError, OSError, ValueError):   # a time past the platform's years
        return None


def _dose(f):
    """The time of the dose an event answers, '08:00', as the bottle's schedule says it: in
    the offset the event was judged in (it was said in UTC: a Berlin patient's 08:00 dose as
    07:00); a device from before events carried it, in UTC, said so."""
    t, off = f.get("scheduled"), f.get("utc_offset_min")
    if isinstance(t, int) and not isinstance(t, bool) and isinstance(off, int) and (
            not isinstance(off, bool)) and -1440 < off < 1440:
        return _clock(t + off * 60000) or "scheduled"
    at = _clock(t)
    return at + " UTC" if at else "scheduled"


def said(event, value, f):
    """The sentence for one insight event (value and fields f as stored); the event's name for
    one this module does not know."""
    text = _SAID.get(event)
    out = text(value, f) if text is not None else None
    return out or event.replace("_", " ")


def _forecast(value, f):
    if not _finite(value):
        return None
    days = _n(value, " days")
    band = ""
    if f.get("weekly") and _finite(f.get("low_days")):
        band = " (%s to %s)" % (_n(f["low_days"]), _n(f["high_days"])
                                if _finite(f.get("high_days")) else "never, on a quiet week")
    return "empty in about %s%s; %s left, using %s a day%s" % (
        days, band, _n(f.get("level"), " %"), _n(f.get("rate_per_day"), " %", 2),
        "" if f.get("weekly") else " (from a few days' drops: no weekly rate yet)")


def _reorder(value, f):
    return "reorder now: empty in about %s, against a lead time of %s; %s left" % (
        _n(value, " days"), _n(f.get("lead_days"), " days"), _n(f.get("level"), " %"))


def _empty(value, f):
    return "ran out at %s%s" % (_n(f.get("level", value), " %"),
                                "" if f.get("reordered") else ", with no reorder sent")


def _replaced(value, f):
    return "new cartridge: %s to %s" % (_n(f.get("from"), " %"), _n(f.get("to", value), " %"))


def _taken(value, f):
    status = f.get("status")
    if status in ("early", "late"):
        minutes = f.get(status + "_min")
        when = ("%s %s" % (duration(60000 * minutes), status) if _finite(minutes) and minutes >= 0
                else status)
    else:
        when = {"on_time": "on time", "away": "off the scale (judged once it was back)"}.get(
            status, status) if isinstance(status, str) else ""
    pills = f.get("pills", value)
    return "%s pill%s taken %s, for the %s dose" % (
        _n(pills), "" if pills == 1 else "s", when, _dose(f))


def _missed(value, f):
    return "the %s dose was missed" % _dose(f)


def _incomplete(value, f):
    return "the %s dose was taken in part: %s of %s pills" % (
        _dose(f), _n(f.get("pills", value)), _n(f.get("dose")))


def _extra(value, f):
    pills = f.get("pills", value)
    return "%s extra pill%s, %s" % (
        _n(pills), "" if pills == 1 else "s",
        "outside any dose's time" if f.get("reason") == "outside" else
        "beyond the %s dose" % _dose(f))


def _refill_needed(value, f):
    return "refill needed: %s pills left, about %s of supply at %s a day" % (
        _n(f.get("count")), _n(f.get("days_left", value), " days"), _n(f.get("per_day")))


def _refilled(value, f):
    return "refilled: %s pills added, %s in the bottle" % (_n(f.get("added", value)),
                                                            _n(f.get("count")))


def _cycle(value, f):
    out = "a %s cycle" % f["programme"] if f.get("programme") else "a cycle"
    if _finite(f.get("duration_s")):
        out += " of " + duration(1000 * f["duration_s"])
    out += ": %s, peak %s" % (_energy(f.get("energy_wh", value)), _n(f.get("peak_w"), " W"))
    return out + (" (readings missing in it)" if f.get("gap") else "")


def _energy(wh):
    return _n(wh / 1000.0, " kWh", 2) if _finite(wh) and wh >= 1000 else _n(wh, " Wh")


def _report(value, f):
    out = "%s in the day, %s of it standby; %s cycle%s" % (
        _n(f.get("kwh", value), " kWh", 2), _n(f.get("standby_kwh"), " kWh", 2),
        _n(f.get("cycles")), "" if f.get("cycles") == 1 else "s")
    if _finite(f.get("cost")) and f["cost"] > 0:
        # a fridge's day costs cents: 2 places showed 0.0036 EUR as 0
        out += "; %s %s" % ("%.2f" % f["cost"] if f["cost"] >= 0.01 else "%.2g" % f["cost"],
                            f.get("currency") or "")
    if _finite(f.get("co2_g")) and f["co2_g"] > 0:
        out += "; %s CO2" % (_n(f["co2_g"] / 1000.0, " kg", 2) if f["co2_g"] >= 1000
                             else _n(f["co2_g"], " g"))
    if _finite(f.get("missing_s")) and f["missing_s"] > 0:
        out += "; no readings for %s of it" % duration(1000 * f["missing_s"])
    return out


def _maintenance(value, f):
    return "maintenance due: the %s has drifted %s from this unit's own normal, and stayed" % (
        WATCH_NAMES.get(f.get("watch"), f.get("watch") or "figure"),
        ("%+.0f %%" % f["drift_pct"]) if _finite(f.get("drift_pct")) else "?")


_SAID = {"forecast": _forecast, "reorder": _reorder, "empty": _empty,
         "cartridge_replaced": _replaced, "dose_taken": _taken, "dose_missed": _missed,
         "dose_incomplete": _incomplete, "extra_dose": _extra,
         "refill_needed": _refill_needed, "refilled": _refilled, "cycle": _cycle,
         "energy_report": _report, "maintenance_due": _maintenance}
