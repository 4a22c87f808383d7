# hal/esp32_net.py on the network and ntptime doubles, on a FakeClock whose sleeps are
# recorded: joins are bounded and retried with a doubling pause, NTP is retried until the
# clock is set. Both interpreters.
MICROPYTHON_HEAP = "96k"  # 64k until the NTP faults' tests: the module's own code then left
# too little for the 1,000 pauses the first test records (the network code needs far less)

import network_fake
import ntptime_fake

from agent.clock import FakeClock
from hal import esp32_net
from hal.esp32_net import Network


class Enough(Exception):
    pass


class Sleeps:
    """The network's pauses: each advances the clock; after `limit` of them the run ends."""

    def __init__(self, clock, limit):
        self.clock = clock
        self.limit = limit
        self.waits = []

    async def __call__(self, ms):
        self.waits.append(ms)
        self.clock.advance(ms)
        if len(self.waits) >= self.limit:
            raise Enough()


def run_for(net, sleeps):
    import asyncio
    try:
        asyncio.run(net.run())
    except Enough:
        pass


def with_doubles(joins_before, ntp_failures, test):
    network_fake.install(joins_before)
    ntptime_fake.install(ntp_failures)
    try:
        test()
    finally:
        network_fake.uninstall()
        ntptime_fake.uninstall()


def test_a_network_that_never_answers_is_retried_with_a_doubling_pause_never_for_ever():
    def test():
        clock = FakeClock()
        sleeps = Sleeps(clock, 1000)
        lines = []
        net = Network({"ssid": "shop", "password": "secret-pw"}, clock, lines.append, sleeps)
        run_for(net, sleeps)
        polls = esp32_net.CONNECT_MS // esp32_net.POLL_MS
        pauses = [w for w in sleeps.waits if w != esp32_net.POLL_MS]
        # Every join attempt ends after CONNECT_MS; the pauses between them double to the cap.
        assert pauses[:4] == [2000, 4000, 8000, 16000], pauses
        assert max(pauses) == esp32_net.BACKOFF_MAX_MS and pauses[-1] == esp32_net.BACKOFF_MAX_MS
        assert net.joins == len(pauses) + (1 if sleeps.waits[-1] == esp32_net.POLL_MS else 0)
        assert sleeps.waits[:polls] == [esp32_net.POLL_MS] * polls
        assert network_fake.WLAN().joins[0] == ("shop", "secret-pw")
        assert not net.connected() and net.rssi() is None and not clock.synced
        assert "wifi: could not join 'shop' in 20000 ms: no access point of that name" in lines
        assert ntptime_fake.calls == 0  # no time without a network
    with_doubles(None, 0, test)


def test_the_link_comes_after_three_failed_joins_then_ntp_after_two_failures_sets_the_clock():
    def test():
        clock = FakeClock(start_ms=5000)
        sleeps = Sleeps(clock, 400)
        lines = []
        ntptime_fake.now_s = 1764750000
        net = Network({"ssid": "cafe"}, clock, lines.append, sleeps)
        run_for(net, sleeps)
        assert net.joins == 4 and net.joined == 1 and net.connected()
        assert network_fake.WLAN().joins[0] == ("cafe", None)  # an open network
        assert net.rssi() == -58
        assert ntptime_fake.calls == 3
        assert clock.synced
        t, synced = clock.now()
        assert synced and t // 1000 >= 1764750000
        assert "ntp: no time from pool.ntp.org: [Errno 110] ETIMEDOUT" in lines or \
            "ntp: no time from pool.ntp.org: 110" in lines, lines
    with_doubles(3, 2, test)


def test_the_profiles_ntp_servers_are_asked_in_turn_a_failed_one_handing_on_to_the_next():
    def test():
        clock = FakeClock()
        sleeps = Sleeps(clock, 400)
        lines = []
        net = Network({"ssid": "plant", "ntp": ["ntp1.plant.lan", "10.0.0.2"]}, clock,
                      lines.append, sleeps)
        run_for(net, sleeps)
        assert clock.synced
        # Three timeouts: the first server, the second, the first again; then the second answers.
        assert ntptime_fake.asked == ["ntp1.plant.lan", "10.0.0.2", "ntp1.plant.lan",
                                      "10.0.0.2"], ntptime_fake.asked
        assert [ln for ln in lines if ln.startswith("ntp: no time from 10.0.0.2")], lines
        assert "ntp: clock set to 1764750000 from 10.0.0.2" in lines, lines
    ntptime_fake.now_s = 1764750000     # uninstall() sets it back
    with_doubles(0, 3, test)


def test_without_ntp_servers_the_board_asks_ntptimes_own():
    def test():
        clock = FakeClock()
        sleeps = Sleeps(clock, 400)
        net = Network({"ssid": "cafe"}, clock, print, sleeps)
        run_for(net, sleeps)
        assert clock.synced and ntptime_fake.asked == ["pool.ntp.org"] * 2
    with_doubles(0, 1, test)


def test_a_lost_link_is_joined_again_and_the_clock_is_synced_again_after_resync_ms():
    def test():
        clock = FakeClock()
        sleeps = Sleeps(clock, 3)
        net = Network({"ssid": "cafe", "password": "12345678"}, clock, print, sleeps)
        run_for(net, sleeps)
        assert net.joined == 1 and ntptime_fake.calls == 1
        network_fake.WLAN().lose_link()
        sleeps.limit = len(sleeps.waits) + 2
        run_for(net, sleeps)
        assert net.joined == 2
        clock.advance(esp32_net.RESYNC_MS)
        sleeps.limit = len(sleeps.waits) + 2
        run_for(net, sleeps)
        assert ntptime_fake.calls >= 2
    with_doubles(0, 0, test)


def test_an_ntp_reply_too_short_or_of_a_time_no_board_has_hands_on_and_sets_no_clock():
    # ntptime's ValueError of a short reply stopped the network task (and, restarted with the
    # link up, it never asked again); a kiss-of-death's 0 (2036 to ntptime) and 1970 were
    # taken as the time, the readings marked synced
    def test():
        clock = FakeClock(start_ms=5000)
        sleeps = Sleeps(clock, 40)
        lines = []
        ntptime_fake.answers[:] = [ValueError("buffer too small"), esp32_net.NTP_ERA, 1000,
                                   esp32_net.NTP_ERA + 3 * 86400,   # a server counting from 0
                                   esp32_net.NTP_ERA + 2208988800]  # one whose clock reads 1970
        ntptime_fake.now_s = 1764750000
        net = Network({"ssid": "cafe", "ntp": ["a", "b", "c"]}, clock, lines.append, sleeps)
        run_for(net, sleeps)
        assert [line for line in lines if line.startswith("ntp:")] == [
            "ntp: no time from a: buffer too small",
            "ntp: b answered 2085978496, no time this board can have been set to",
            "ntp: c answered 1000, no time this board can have been set to",
            "ntp: a answered 2086237696, no time this board can have been set to",
            "ntp: b answered 4294967296, no time this board can have been set to",
            "ntp: clock set to 1764750000 from c"]
        assert clock.synced
    with_doubles(0, 0, test)


def test_the_time_from_2036_on_is_the_time():
    # Every answer from 2036-02-07 on was refused as a kiss-of-death's: a board booted then
    # never had the time, its readings unsynced and its insights idle, for good
    def test():
        clock = FakeClock(start_ms=5000)
        sleeps = Sleeps(clock, 3)
        lines = []
        ntptime_fake.now_s = 2088028800              # 2036-03-01, a true server
        net = Network({"ssid": "cafe"}, clock, lines.append, sleeps)
        run_for(net, sleeps)
        assert "ntp: clock set to 2088028800 from pool.ntp.org" in lines and clock.synced
    with_doubles(0, 0, test)


def test_a_resync_that_steps_the_clock_says_by_how_much():
    # A server's believable wrong time (2035) was taken, and the next resync set the clock back
    # nine years without a word.
    def test():
        clock = FakeClock()
        sleeps = Sleeps(clock, 3)
        lines = []
        ntptime_fake.now_s = 2060000000
        net = Network({"ssid": "cafe"}, clock, lines.append, sleeps)
        run_for(net, sleeps)
        ntptime_fake.now_s = 1764750000 + esp32_net.RESYNC_MS // 1000
        clock.advance(esp32_net.RESYNC_MS)
        sleeps.limit = len(sleeps.waits) + 2
        run_for(net, sleeps)
        said = [line for line in lines if line.startswith("ntp:")]
        assert said[0] == "ntp: clock set to 2060000000 from pool.ntp.org", lines
        head = "ntp: clock set to %d from pool.ntp.org, a step of " % ntptime_fake.now_s
        assert len(said) == 2 and said[1].startswith(head), lines
        # back by the nine years, less the fake clock's pauses between the two
        assert -60 < int(said[1][len(head):-2]) - (1764750000 - 2060000000) <= 0, lines
    with_doubles(0, 0, test)


def test_a_network_task_restarted_with_the_link_up_asks_ntp_at_once():
    def test():
        import asyncio
        clock = FakeClock(start_ms=5000)
        lines = []
        net = Network({"ssid": "cafe"}, clock, lines.append, Sleeps(clock, 3))
        assert asyncio.run(net.join())           # joined, then the task failed and restarts
        ntptime_fake.now_s = 1764750000
        run_for(net, net.sleep)
        assert net.joins == 1 and clock.synced, lines
    with_doubles(0, 0, test)
