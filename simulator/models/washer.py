# A household washing machine behind a PZEM-004T: programmes with their power profiles, a few
# runs a week at the hours people wash, mains voltage, and a slowly degrading drum motor on some
# units. HOST-ONLY (CPython).
#
# Sensors it drives: every PZEM-004T (or INA219) quantity of the profile: power W, energy Wh (the
# exact integral of the power: simulator/models/base.py), voltage V, current, power factor.
#
# Per household (drawn once): 2-7 runs a week (uniform), weekend days 1.5 x a weekday; start
# times on weekdays 06:30-09:00 (30 %), 17:30-21:30 (55 %) or 09:00-16:00 (15 %), at weekends
# 08:00-18:00; never after 22:00; runs of a day follow each other with 20-60 min between.
# Programme preferences: the weights below x U(0.3, 1.7).
# A programme (slot = 5 s on the example profile):
#   fill       3 min   drum tumbling gently: 90 W turning, 200 W spikes, 12 W pauses
#   heat       water kg x 4.186 x (target - inlet) / 0.9 at the unit's heater (1950-2100 W),
#              the drum tumbling on top (+120 W, spikes +300 W): "~2 kW at the start";
#              inlet water 13 C +- 5 C with the season (coldest in February: longer heating)
#   wash       the drum at 150-220 W turning, a reversal spike of 320-420 W every period (4-6
#              slots a load: spike, turning, pause at 10 W), heater top-ups of 1 min every
#              20 min for 40 C and more
#   drain      1 min pump at 45 W, then 2 min intermediate spin at 0.7 x spin power
#   rinse x N  2 min fill at 12 W, 6 min drum at 0.9 x wash power, drain, short spin
#   spin       1 min balancing (cycle at 0.5 x spin), 1 min at 0.8 x, then 5-8 min at the spin
#              power (450-550 W for 1400 rpm programmes, 350 W at 800 rpm, +-4 %), 1 min
#              coast-down at 60 W
#   end        2 min at 3 W (door lock, display), then standby 0.5 W
# Mains: 230 V + the unit's offset (+-3 V) + the hour's swing (+1.5 V at night, -2 V at 18-21)
# +- 0.3 V noise, minus the drop of the appliance's current in 0.25 ohm of wiring (~2 V at 2 kW).
# Power factor: 0.99 heating, 0.7 with the motor, 0.5 standby.
# Load size (per run, the confounder of every per-cycle figure): L = U(0.35, 1.0) of the 8 kg
# drum. The drum's turning power and its reversal spikes x (0.75 + 0.5 L), the fill tumbling too,
# the spin x (0.8 + 0.4 L), the water heated x (0.6 + 0.6 L) (load sensing): a full cotton wash
# takes ~40 % more energy and ~25 % more drum power than a light one.
# Programme mix: the household's preferences (the weights below x U(0.3, 1.7)) are drawn again
# about every 6 weeks (each day with probability 1/42: a new baby, sports kit, summer), so the mix
# of a unit's cycles shifts over time.
# Degrading motor: 1 unit in 5 (and always unit_index 1, so any fleet with two washers shows
# one). From its onset, U(1, 6) weeks after the start of the simulation, w weeks later: drum and
# spin power x (1 + r w), reversal spikes x (1 + 2.5 r w) (worn bearings: breaking the drum loose
# takes ever more torque), r uniform 4-8 % a week; the heater is not affected. The motor fails
# when r w reaches the unit's D, uniform 0.20-0.35 (3-9 weeks after the onset): from then on the
# washer runs no programme (the household waits for the technician), its standby goes on. A fast
# failure, so that a 3-month run sees most of them. Healthy units never fail.
#
# Truth: programmes [{"t", "end", "programme", "temp", "load", "drum_w", "spike_w", "spin_w",
# "energy_wh"}] (energy_wh: the programme's mean energy; load: L), mix_changes [t], degrading,
# degrade_per_week, degrade_onset_ms and failure_ms (None on healthy units).
import math

from simulator.models.base import (DAY_MS, HOUR_MS, MINUTE_MS, WEEK_MS, Meter, Model,
                                   PowerTrace, day_of_year, poisson, slot_ms_for, weekday)

STANDBY_W = 0.5
DEGRADING_FRACTION = 0.2
MIX_CHANGE_PER_DAY = 1.0 / 42
LINE_OHMS = 0.25
# name: (target C, water kg, wash min, rinses, spin W, preference weight)
PROGRAMMES = {
    "cotton 60": (60, 14.0, 70, 3, 520, 0.25),
    "cotton 40": (40, 14.0, 60, 3, 500, 0.20),
    "eco 40-60": (40, 8.0, 130, 2, 500, 0.25),
    "synthetics 40": (40, 10.0, 45, 2, 350, 0.15),
    "quick 30": (30, 7.0, 12, 1, 450, 0.15),
}
VOLT_HOURS = (1.5, 1.5, 1.5, 1.5, 1.5, 1.0, 0.5, -0.5, -1.0, -0.5, 0.0, 0.0,
              -0.5, 0.0, 0.0, 0.0, -0.5, -1.0, -2.0, -2.0, -2.0, -1.0, 0.0, 1.0)


class Mains:
    """Voltage and power factor of a mains-powered appliance (shared with the fridge)."""

    def __init__(self, rng):
        self.offset = 230.0 + rng.uniform(-3.0, 3.0)

    def volts(self, t_ms, watts, n):
        v = self.offset + VOLT_HOURS[(t_ms // HOUR_MS) % 24] + 0.3 * n
        return v - LINE_OHMS * watts / v


def power_factor(watts):
    return 0.99 if watts > 1000 else (0.7 if watts > 40 else 0.5)


def put_mains(model, t_ms, platform):
    """The meter of a mains appliance (washer, fridge) shows its power trace at t_ms."""
    tr = model.trace
    model.mark_energy(tr)
    wh = tr.update(t_ms)
    w = tr.value
    model.meter.put(platform, w, wh, model.mains.volts(t_ms, w, model.noise.next()),
                    power_factor(w))


def inlet_celsius(t_ms):
    """Cold-water temperature: 13 C +- 5 C, coldest around 1 February."""
    return 13.0 - 5.0 * math.cos(2 * math.pi * (day_of_year(t_ms) - 31) / 365.0)


class Washer(Model):
    def __init__(self, profile, rng, start_ms, unit_index=0):
        Model.__init__(self, profile, rng, start_ms, unit_index)
        self.runs_per_week = rng.uniform(2.0, 7.0)
        self.prefs = self._draw_prefs()
        self.heater_w = rng.uniform(1950, 2100)
        self.drum_w = rng.uniform(150, 220)
        self.spike_w = rng.uniform(320, 420)
        self.spin_k = rng.uniform(0.9, 1.06)
        self.degrade = rng.uniform(0.04, 0.08)
        self.degrading = rng.random() < DEGRADING_FRACTION or unit_index == 1
        self.mains = Mains(rng)
        self.onset_ms = start_ms + int(rng.uniform(1.0, 6.0) * WEEK_MS)
        self.failure_ms = self.onset_ms + int(rng.uniform(0.20, 0.35) / self.degrade * WEEK_MS)
        if not self.degrading:
            self.onset_ms = self.failure_ms = None
        self.truth = {"programmes": [], "mix_changes": [], "degrading": self.degrading,
                      "degrade_per_week": self.degrade if self.degrading else 0.0,
                      "degrade_onset_ms": self.onset_ms, "failure_ms": self.failure_ms}
        self.meter = Meter(profile)
        self.trace = PowerTrace(slot_ms_for(profile), self.plan_next_day, self.noise, start_ms,
                                rng.uniform(20000, 400000))

    def _draw_prefs(self):
        return [(name, p[5] * self.rng.uniform(0.3, 1.7)) for name, p in PROGRAMMES.items()]

    def _wear(self, t_ms):
        """Weeks of wear at t_ms (0 before the onset and on healthy units)."""
        if self.onset_ms is None or t_ms <= self.onset_ms:
            return 0.0
        return (t_ms - self.onset_ms) / WEEK_MS

    def _pick(self):
        total = sum(w for _, w in self.prefs)
        x = self.rng.random() * total
        for name, w in self.prefs:
            if x < w:
                return name
            x -= w
        return self.prefs[-1][0]

    def _start_time(self, day0, weekend):
        rng = self.rng
        if weekend:
            m = rng.uniform(8 * 60, 18 * 60)
        else:
            x = rng.random()
            m = (rng.uniform(6.5 * 60, 9 * 60) if x < 0.30 else
                 rng.uniform(17.5 * 60, 21.5 * 60) if x < 0.85 else rng.uniform(9 * 60, 16 * 60))
        return day0 + int(m * MINUTE_MS)

    def plan_day(self, day, day0, day1):
        rng = self.rng
        lo = max(day0, self.start_ms)
        if rng.random() < MIX_CHANGE_PER_DAY:
            self.prefs = self._draw_prefs()
            self.record(lo, "mix_changes", lo)
        weekend = weekday(day0) >= 5
        mean = self.runs_per_week / 7.0 * (1.5 if weekend else 1.0) * 7.0 / 8.0
        starts = sorted(self._start_time(day0, weekend) for _ in range(poisson(rng, mean)))
        tr = self.trace
        for t in starts:
            if t < lo:
                continue
            t = max(t, tr.end_ms + int(rng.uniform(20, 60) * MINUTE_MS))
            if t % DAY_MS > 22 * HOUR_MS or t >= day1:
                continue
            if self.failure_ms is not None and t >= self.failure_ms:
                continue
            tr.emit(t, STANDBY_W, 0.05, "standby")
            self._programme(self._pick(), tr.end_ms)
        tr.emit(day1, STANDBY_W, 0.05, "standby")

    def _programme(self, name, t0):
        rng = self.rng
        temp, water, wash_min, rinses, spin_w, _ = PROGRAMMES[name]
        tr = self.trace
        load = rng.uniform(0.35, 1.0)
        wear = self.degrade * self._wear(t0)
        torque = 0.75 + 0.5 * load
        f = (1.0 + wear) * torque
        g = (1.0 + 2.5 * wear) * torque
        drum = self.drum_w * f
        spike = self.spike_w * g
        spin = spin_w * self.spin_k * (1.0 + wear) * (0.8 + 0.4 * load)
        water *= 0.6 + 0.6 * load
        heater = self.heater_w
        period = rng.choice((4, 5, 6))       # this load's reversal rhythm, in slots
        i0 = len(tr.segs)
        e0 = tr.end
        m = MINUTE_MS
        tr.emit_cycle(t0 + 3 * m, 90.0 * f, 200.0 * g, 12.0, 6, "fill")
        delta = max(0.0, temp - inlet_celsius(t0))
        heat_ms = int(water * 4186.0 * delta / 0.9 / heater * 1000)
        tr.emit_cycle(tr.end_ms + heat_ms, heater + 120.0 * f, heater + 300.0 * g, heater + 8.0,
                      6, "heat")
        left = wash_min * m
        while left > 0:
            chunk = min(left, 20 * m)
            tr.emit_cycle(tr.end_ms + chunk, drum, spike, 10.0, period, "wash")
            left -= chunk
            if left > 0 and temp >= 40:
                tr.emit_cycle(tr.end_ms + m, heater + drum, heater + spike, heater + 10.0, period,
                              "heat")
        for r in range(rinses + 1):
            if r:
                tr.emit(tr.end_ms + 2 * m, 12.0, 1.0, "fill")
                tr.emit_cycle(tr.end_ms + 6 * m, 0.9 * drum, spike, 10.0, period, "rinse")
            tr.emit(tr.end_ms + m, 45.0, 3.0, "drain")
            if r < rinses:
                tr.emit(tr.end_ms + 2 * m, 0.7 * spin, 0.04 * spin, "spin")
        tr.emit_cycle(tr.end_ms + m, 0.5 * spin, spike, 0.3 * spin, 4, "spin")
        tr.emit(tr.end_ms + m, 0.8 * spin, 0.04 * spin, "spin")
        tr.emit(tr.end_ms + int(rng.uniform(5, 8) * m), spin, 0.04 * spin, "spin")
        tr.emit(tr.end_ms + m, 60.0, 5.0, "spin")
        tr.emit(tr.end_ms + 2 * m, 3.0, 0.2, "end")
        energy = sum(s[7] * (s[1] - s[0]) for s in tr.segs[i0:]) * tr.slot_s / 3600.0
        self.record(tr.end_ms, "programmes", {
            "t": e0 * tr.slot_ms, "end": tr.end_ms, "programme": name, "temp": temp,
            "load": round(load, 2), "drum_w": round(drum, 1), "spike_w": round(spike, 1),
            "spin_w": round(spin, 1),
            "energy_wh": round(energy, 1)})

    def driven(self):
        return self.meter.names

    def drive(self, t_ms, platform):
        put_mains(self, t_ms, platform)
