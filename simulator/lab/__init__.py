"""Real parts started on loopback, for the tests and the benchmarks alike (host only):

    mosquitto.py   Debian's mosquitto on a free port (Mosquitto), TLS files, a recording
                   Subscriber, brokers that misbehave on purpose (BlackHole, FakeBroker)
    netproxy.py    a TCP proxy that cuts, stalls and slows a link (Proxy)
    micropython.py the real `micropython` binary as a runner, and the portable packages
                   compiled to .mpy (compile_tree)
    fakeboard.py   a MicroPython board on a pseudo-terminal (FakeBoard), run by
                   fakeboard_server.py under the real `micropython`
    bundles.py     bundles in `tether build`'s format, made directly
    postgres.py    Debian's PostgreSQL server in a temp folder on a free port (Postgres)

Nothing here skips or fakes what is missing: a missing tool raises ToolMissing (mosquitto.py) or
a RuntimeError naming it, and tests/ turns that into a failed test.
"""
