"""The fleet console (`tether console`): the post-sale view of a fleet in a browser, read from
the ingest's database (ingest/), commanding devices through the broker. Host-only.

    reads.py      what the pages show: the fleet, a device, the fleet's clock
    actions.py    what needs someone now: reorders, missed doses, maintenance, silence, drops
    commands.py   commands to devices over MQTT, each waiting for its reply
    app.py        the Starlette app: pages, JSON, live updates, access, input checks
    server.py     uvicorn on a host and port, the token
"""
