# A time zone's offset from UTC at any time, from its POSIX TZ rule ("CET-1CEST,M3.5.0,M10.5.0/3",
# the last line of the zone's tzdata file: `tether compile` writes it for a profile's
# `device.timezone`), so that a device keeps local time through daylight saving changes by
# itself. A board has no zone database, and a fixed offset left every pill bottle judging doses
# an hour off, and every daily report closing at 23:00 or 01:00, half the year, unless the cloud
# sent each device its new offset twice a year. Portable: runs on a board as on CPython.
_DAY = 86400


def _days(y, m, d):
    """Days from 1970-01-01 to y-m-d (proleptic Gregorian)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def _year(t_s):
    """The year of Unix seconds t_s (UTC)."""
    y = 1970 + t_s // (365 * _DAY + _DAY // 4)
    while _days(y, 1, 1) * _DAY > t_s:
        y -= 1
    while _days(y + 1, 1, 1) * _DAY <= t_s:
        y += 1
    return y


def _leap(y):
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


class _Reader:
    def __init__(self, text):
        self.s = text
        self.i = 0

    def bad(self, what):
        raise ValueError("TZ rule %r: expected %s at character %d" % (self.s, what, self.i + 1))

    def peek(self):
        return self.s[self.i] if self.i < len(self.s) else ""

    def name(self):
        s, i = self.s, self.i
        if self.peek() == "<":
            end = s.find(">", i)
            if end < i + 4:
                self.bad("a zone name of at least 3 characters in <>")
            self.i = end + 1
            return
        while i < len(s) and s[i].isalpha():
            i += 1
        if i - self.i < 3:
            self.bad("a zone name of at least 3 letters")
        self.i = i

    def number(self, most):
        s, i = self.s, self.i
        while i < len(s) and "0" <= s[i] <= "9":
            i += 1
        if i == self.i or i - self.i > 3 or int(s[self.i:i]) > most:
            self.bad("a number up to %d" % most)
        n = int(s[self.i:i])
        self.i = i
        return n

    def clock(self, most_h):
        """[+-]hh[:mm[:ss]] in seconds."""
        sign = 1
        c = self.peek()
        if c == "+" or c == "-":
            sign = -1 if c == "-" else 1
            self.i += 1
        t = self.number(most_h) * 3600
        for scale in (60, 1):
            if self.peek() != ":":
                break
            self.i += 1
            t += self.number(59) * scale
        return sign * t

    def date(self):
        """(kind, a, b, c, time of day in s): 'J' day 1-365 without Feb 29, 'n' day 0-365,
        'M' month, week 1-5 (5: the last), weekday 0-6 (0: Sunday)."""
        if self.peek() == "M":
            self.i += 1
            m = self.number(12)
            if self.peek() != "." or m < 1:
                self.bad("M<month 1-12>.<week 1-5>.<day 0-6>")
            self.i += 1
            w = self.number(5)
            if self.peek() != "." or w < 1:
                self.bad("M<month 1-12>.<week 1-5>.<day 0-6>")
            self.i += 1
            rule = ("M", m, w, self.number(6))
        elif self.peek() == "J":
            self.i += 1
            n = self.number(365)
            if n < 1:
                self.bad("J<day 1-365>")
            rule = ("J", n, 0, 0)
        else:
            rule = ("n", self.number(365), 0, 0)
        t = 7200
        if self.peek() == "/":
            self.i += 1
            t = self.clock(167)     # RFC 8536: -167 to 167 hours
        return rule + (t,)


def parse(text):
    """(standard offset east of UTC in s, daylight one or None, start rule, end rule): the
    rules as date() gives them. ValueError, saying where, for anything else."""
    if not isinstance(text, str) or not text:
        raise ValueError("TZ rule: expected text like 'CET-1CEST,M3.5.0,M10.5.0/3', got %r"
                         % (text,))
    r = _Reader(text)
    r.name()
    std = -r.clock(24)          # POSIX counts west of Greenwich: CET-1 is UTC+1
    if not r.peek():
        return std, None, None, None
    r.name()
    dst = std + 3600
    if r.peek() and r.peek() != ",":
        dst = -r.clock(24)
    if r.peek() != ",":
        # a daylight time with no rule: POSIX leaves it to the implementation (US rules once)
        r.bad("',' and the rule of its daylight saving time")
    r.i += 1
    start = r.date()
    if r.peek() != ",":
        r.bad("',' and the end of daylight saving time")
    r.i += 1
    end = r.date()
    if r.peek():
        r.bad("the end of the rule")
    return std, dst, start, end


def _local_day(y, rule):
    """The day (since 1970) a rule falls on in year y."""
    kind, a, b, c = rule[0], rule[1], rule[2], rule[3]
    if kind == "J":
        return _days(y, 1, 1) + a - 1 + (1 if _leap(y) and a >= 60 else 0)
    if kind == "n":
        return _days(y, 1, 1) + a
    first = _days(y, a, 1)
    after = _days(y + (a == 12), a % 12 + 1, 1)
    day = first + (c - (first + 4)) % 7 + 7 * (b - 1)      # 1970-01-01 was a Thursday
    while day >= after:
        day -= 7
    return day


class Zone:
    """offset_min(t_ms): the zone's offset east of UTC in minutes at Unix ms t_ms."""

    def __init__(self, text):
        self.text = text
        self.std, self.dst, self.start, self.end = parse(text)
        self.lo = self.hi = 0       # the year cached: its bounds and transitions, in s
        self.on = self.off = self.spill = 0

    def _on_off(self, y):
        """Year y's transitions in Unix s, each at its local time in the time before it."""
        return (_local_day(y, self.start) * _DAY + self.start[4] - self.std,
                _local_day(y, self.end) * _DAY + self.end[4] - self.dst)

    def offset_min(self, t_ms):
        if self.dst is None:
            return self.std // 60
        t = t_ms // 1000
        if not self.lo <= t < self.hi:
            y = _year(t)
            self.lo, self.hi = _days(y, 1, 1) * _DAY, _days(y + 1, 1, 1) * _DAY
            self.on, self.off = self._on_off(y)
            # a summer of the year before that ends in this one (a rule for summer all year,
            # "EST5EDT4,0/0,J365/25", ends at 01:00 on January 1st: those hours read winter)
            on, off = self._on_off(y - 1)
            self.spill = off if on < off else 0
        if self.on < self.off:
            summer = self.on <= t < self.off or t < self.spill
        else:               # the southern hemisphere: summer spans the new year
            summer = t < self.off or t >= self.on
        return (self.dst if summer else self.std) // 60
