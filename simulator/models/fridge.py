# A household fridge behind a PZEM-004T: a thermostat switching the compressor as the cabinet
# warms and cools, door openings, a daily defrost, summer, and a degrading compressor on some
# units. HOST-ONLY (CPython).
#
# Sensors it drives: every power meter quantity of the profile (power W, energy Wh as the exact
# integral of the power, voltage V, current, power factor), as the washer does; and every
# `temperature` sensor (an SHT3x in the cabinet): the thermal model's cabinet, +-0.05 C.
#
# Thermal model (Newton cooling, solved exactly between events, no time steps): the cabinet at
# temperature T warms towards the room, dT/dt = (T_room - T) / tau, with tau = 310 min
# x U(0.85, 1.15); with the compressor on it cools towards T_room - K, K = 48 C x U(0.92, 1.08).
# The thermostat turns the compressor on at T_high (5 C) and off at T_low (3 C), +-0.5 C per
# unit. In a 21 C room that gives off-cycles of ~37 min and on-cycles of ~20 min (duty ~35 %);
# at 27 C (summer) ~27 and ~25 min (duty ~48 %); at 18 C ~45 and ~18 min.
# Room: the household's 19.5-22.5 C, + 3 C x cos(season) (warmest around 19 July), + 1.5 C
# x cos(day) (warmest at 16:00).
# Doors: 2-5 openings at 06:30-08:30, 1-3 at 12:00-13:30, 4-10 at 17:00-21:00, 0-3 at other
# daytime hours, each adding 0.15-0.6 C to the cabinet (warm air, warm food).
# Defrost: once a day at the unit's time (00:45-23:00, +-30 min): compressor off, heater 200 W x U(0.95, 1.05)
# for 20 min, the cabinet warming as when off plus 1 C; then the compressor pulls it down.
# Power: compressor 88 W x U(0.9, 1.1) +-1.5 W, x (1 + a (T_room - 21 C)) with the room at its
# start, a uniform 0.5-1 % per C (a warmer condenser, a higher head pressure: the ambient
# confounder of power and duty alike); its first slot 1.6 x (start-up current); off 1.8 W
# (electronics, fan) +-0.1 W. Mains voltage and power factor as the washer's (0.7 above 40 W,
# 0.5 below).
# Degrading compressor: 1 unit in 5 (and always unit_index 1). From its onset, U(1, 6) weeks
# after the start of the simulation, w weeks later: K x (1 - r w), r uniform 3-6 % a week, and
# the compressor's power x (1 + r/2 w): on-cycles grow longer week by week (at -30 % K a 21 C
# room needs ~40 min on-cycles); K never falls below T_room - T_low + 2 C (then the compressor
# hardly stops). The compressor fails when r w reaches the unit's D, uniform 0.25-0.40 (4-13 weeks
# after the onset): it never starts again (the cabinet warms to the room), the electronics and the
# daily defrost go on. Healthy units never fail.
#
# Truth: compressor_cycles [(on_ms, off_ms)], defrosts [(t_ms, end_ms)], door_openings [t_ms],
# degrading, degrade_per_week, degrade_onset_ms and failure_ms (None on healthy units).
import math

from simulator.models.base import (DAY_MS, FOREVER, HOUR_MS, MINUTE_MS, NOISE, NOISE_MASK, WEEK_MS,
                                   Meter, Model, PowerTrace, day_of_year, slot_ms_for)
from simulator.models.washer import Mains, put_mains

DEGRADING_FRACTION = 0.2
OFF_W = 1.8
DEFROST_MS = 20 * MINUTE_MS
DOOR_WINDOWS = ((6.5, 8.5, 2, 5), (12.0, 13.5, 1, 3), (17.0, 21.0, 4, 10), (9.0, 17.0, 0, 3))


class Fridge(Model):
    def __init__(self, profile, rng, start_ms, unit_index=0):
        Model.__init__(self, profile, rng, start_ms, unit_index)
        self.tau = 310.0 * MINUTE_MS * rng.uniform(0.85, 1.15)
        self.k = 48.0 * rng.uniform(0.92, 1.08)
        mid = 4.0 + rng.uniform(-0.5, 0.5)
        self.t_low, self.t_high = mid - 1.0, mid + 1.0
        self.comp_w = 88.0 * rng.uniform(0.9, 1.1)
        self.heater_w = 200.0 * rng.uniform(0.95, 1.05)
        self.room = rng.uniform(19.5, 22.5)
        self.defrost_tod = int(rng.uniform(0.75, 23.0) * HOUR_MS)
        self.degrade = rng.uniform(0.03, 0.06)
        self.degrading = rng.random() < DEGRADING_FRACTION or unit_index == 1
        self.mains = Mains(rng)
        self.ambient_k = rng.uniform(0.005, 0.01)
        self.onset_ms = start_ms + int(rng.uniform(1.0, 6.0) * WEEK_MS)
        self.failure_ms = self.onset_ms + int(rng.uniform(0.25, 0.40) / self.degrade * WEEK_MS)
        if not self.degrading:
            self.onset_ms = self.failure_ms = None
        self.dead = False
        self.truth = {"compressor_cycles": [], "defrosts": [], "door_openings": [],
                      "degrading": self.degrading,
                      "degrade_per_week": self.degrade if self.degrading else 0.0,
                      "degrade_onset_ms": self.onset_ms, "failure_ms": self.failure_ms}
        # Thermal state at the end of the plan.
        self.temp = rng.uniform(self.t_low, self.t_high)
        self.on = rng.random() < 0.35
        self.on_since = start_ms
        self.on_w = self.comp_w
        self.meter = Meter(profile)
        self.trace = PowerTrace(slot_ms_for(profile), self.plan_next_day, self.noise, start_ms,
                                rng.uniform(50000, 900000))
        self.cabinet = [s["name"] for s in profile["sensors"] if s["quantity"] == "temperature"]
        # The cabinet's course as planned: (from, to, temperature at from, towards), each a
        # stretch of Newton cooling, for the temperature sensors; kept only from the last read.
        self.stretches = []
        self._stretch = 0

    def room_at(self, t_ms):
        season = 3.0 * math.cos(2 * math.pi * (day_of_year(t_ms) - 200) / 365.0)
        daily = 1.5 * math.cos(2 * math.pi * ((t_ms % DAY_MS) / HOUR_MS - 16) / 24.0)
        return self.room + season + daily

    def _wear(self, t_ms):
        """r w at t_ms: 0 before the onset and on healthy units."""
        if self.onset_ms is None or t_ms <= self.onset_ms:
            return 0.0
        return self.degrade * (t_ms - self.onset_ms) / WEEK_MS

    def _k_at(self, t_ms, room):
        k = self.k * (1.0 - self._wear(t_ms))
        floor = room - self.t_low + 2.0
        return k if k > floor else floor

    def _comp_w(self, t_ms):
        ambient = 1.0 + self.ambient_k * (self.room_at(t_ms) - 21.0)
        return self.comp_w * ambient * (1.0 + 0.5 * self._wear(t_ms))

    def _switch_on(self, t):
        tr = self.trace
        tr.emit(t, OFF_W, 0.1, "off")
        self.on = True
        self.on_since = tr.end_ms
        self.on_w = w = self._comp_w(t)
        tr.emit_slots(1, 1.6 * w, 3.0, "start")

    def _switch_off(self, t):
        tr = self.trace
        tr.emit(t, self.on_w, 1.5, "on")
        self.on = False
        self.record(tr.end_ms, "compressor_cycles", (self.on_since, tr.end_ms))

    def plan_day(self, day, day0, day1):
        rng = self.rng
        lo = max(day0, self.start_ms)
        doors = []
        for a, b, n0, n1 in DOOR_WINDOWS:
            for _ in range(rng.randint(n0, n1)):
                t = day0 + int(rng.uniform(a, b) * HOUR_MS)
                if t >= lo:
                    doors.append((t, rng.uniform(0.15, 0.6)))
        doors.sort()
        defrost = day0 + self.defrost_tod + int(rng.uniform(-30, 30) * MINUTE_MS)
        if defrost < lo or defrost + DEFROST_MS >= day1:
            defrost = None
        tr = self.trace
        t = max(tr.end_ms, lo)
        tau = self.tau
        di = 0
        failure = self.failure_ms if self.failure_ms is not None else FOREVER
        while t < day1:
            room = self.room_at(t)
            temp = self.temp
            if self.dead:
                eq = room
                dt = FOREVER
            elif self.on:
                eq = room - self._k_at(t, room)
                dt = tau * math.log((temp - eq) / (self.t_low - eq)) if temp > self.t_low else 0.0
            else:
                eq = room
                dt = tau * math.log((eq - temp) / (eq - self.t_high)) if temp < self.t_high else 0.0
            switch = t + int(dt)
            nxt = min(switch, day1, t + HOUR_MS)
            door = doors[di][0] if di < len(doors) else None
            if door is not None and door < nxt:
                nxt = door
            if defrost is not None and defrost < nxt:
                nxt = defrost
            if not self.dead and failure < nxt:
                nxt = failure
            if self.cabinet and nxt > t:
                self.stretches.append((t, nxt, temp, eq))
            self.temp = eq + (temp - eq) * math.exp(-(nxt - t) / tau)
            t = nxt
            if not self.dead and t == failure:
                if self.on:
                    self._switch_off(t)
                self.dead = True
            elif door is not None and t == door:
                self.temp += doors[di][1]
                self.record(t, "door_openings", t)
                di += 1
            elif defrost is not None and t == defrost:
                if self.on:
                    self._switch_off(t)
                else:
                    tr.emit(t, OFF_W, 0.1, "off")
                start = tr.end_ms
                tr.emit(t + DEFROST_MS, self.heater_w, 1.0, "defrost")
                self.record(tr.end_ms, "defrosts", (start, tr.end_ms))
                room = self.room_at(t)
                if self.cabinet:
                    self.stretches.append((t, tr.end_ms, self.temp, room))
                self.temp = room + (self.temp - room) * math.exp(-DEFROST_MS / tau) + 1.0
                t = tr.end_ms
                defrost = None
                if not self.dead:
                    self._switch_on(t)
            elif t == switch:
                if self.on:
                    self._switch_off(t)
                else:
                    self._switch_on(t)
        if self.on:
            tr.emit(day1, self.on_w, 1.5, "on")
        else:
            tr.emit(day1, OFF_W, 0.1, "off")

    def driven(self):
        return self.meter.names | set(self.cabinet)

    def drive(self, t_ms, platform):
        put_mains(self, t_ms, platform)
        if self.cabinet:
            # noise by the second, not by the call: the readings of a seed at any speed
            c = self.cabinet_at(t_ms) + 0.05 * NOISE[
                ((t_ms // 1000) * 2654435761 + self.seed_key[1]) & NOISE_MASK]
            for name in self.cabinet:
                platform.set(name, c)

    def cabinet_at(self, t_ms):
        """The cabinet's temperature at t_ms (planned; device time never goes back)."""
        st = self.stretches
        i = self._stretch
        while i + 1 < len(st) and st[i][1] <= t_ms:
            i += 1
        if i > 256:         # a year of stretches is no list to keep
            del st[:i]
            i = 0
        self._stretch = i
        t0, t1, temp, eq = st[i]
        return eq + (temp - eq) * math.exp(-(min(t_ms, t1) - t0) / self.tau)
