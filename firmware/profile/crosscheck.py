"""Checks across sections: pins used twice, chips claiming one bus address, room for batches.

They run on the compiled values that passed their own rules, and report at the YAML node of the
later claim (or of the section holding a default).
"""
from firmware.profile.errors import at, shown
from hal.chips import CHIPS
from firmware.profile.rules import find
from firmware.profile.units import format_size


def check(ctx, root, compiled):
    pins(ctx, root, compiled)
    addresses(ctx, root, compiled)
    one_chip(ctx, root, compiled)
    buffer_room(ctx, root, compiled)


def items(root, compiled, key):
    """(compiled item, its node) for each valid item of a top-level list."""
    node = root.value.get(key)
    if node is None or node.tag != "seq" or not isinstance(compiled.get(key), list):
        return []
    return [(c, n) for c, n in zip(compiled[key], node.value) if c]


def pins(ctx, root, compiled):
    """A pin serves one role of one owner; two sensors of one chip (an HX711's weight and count,
    a level probe's pin) share its pins."""
    claims = {}  # pin -> (owner, role, path of the first claim)

    def claim(node, n, owner, role):
        # by the compiled number: GPIO17 and 17 are one pin
        first = claims.setdefault(n, (owner, role, node.path))
        if first[:2] != (owner, role):
            ctx.problems.append(at(node, "pin %s is already used by %s" % (shown(node), first[2])))

    for b, n in items(root, compiled, "buses"):
        for role in ("sda", "scl", "tx", "rx"):
            if role in b:
                claim(n.value[role], b[role], n.path, role)
    for s, n in items(root, compiled, "sensors"):
        chip = s.get("pins", {})
        owner = (s.get("driver"),) + tuple(sorted(chip.items()))
        for role in chip:
            claim(n.value["pins"].value[role], chip[role], owner, role)
        if "pin" in s:
            # one probe read by two sensors is one chip, as with an ADS1115 channel (one_chip
            # then judges their calibration): "already used" and "give it once" both were said
            claim(n.value["pin"], s["pin"], (s.get("driver"), s["pin"]), "adc")


def addresses(ctx, root, compiled):
    """One chip per bus address, except several quantities of the same chip (same driver)."""
    chips = {}  # (bus, address) -> (driver, path of the first sensor)

    def claim(bus, address, driver, node, sensor_path):
        first = chips.setdefault((bus, address), (driver, sensor_path))
        if first[0] != driver:
            kind = ctx.buses.get(bus, (None,))[0]
            written = "0x%02x" % address if kind == "i2c" else str(address)
            if node.secret:
                written = shown(node)
            ctx.problems.append(at(node, "address %s on bus '%s' is already used by %s (%s)"
                                   % (written, bus, first[1], first[0])))

    for s, n in items(root, compiled, "sensors"):
        if "bus" in s and "address" in s:
            claim(s["bus"], s["address"], s["driver"], find(n, "address"), n.path)
        for key, chip in CHIPS.get(s.get("driver"), {}).items():  # a level probe's `adc:`
            place = s.get(key, {})
            if "bus" in place and "address" in place:
                claim(place["bus"], place["address"], chip, find(n, key, "address"), n.path)


def one_chip(ctx, root, compiled):
    """Sensors that read one chip (one driver key) share its settings (SHARED): given on any
    one of them, they hold for all, and two that differ are an error. The chip is built once,
    and a second sensor's calibration or gain was ignored in silence (a current read ten times
    too low), or the first one's default won over what the second gave. Then each chip's own
    check_chip() judges the settings it ends up with."""
    from firmware.profile.chips import DRIVERS
    from hal.chips import driver
    groups = {}  # chip key -> [(compiled sensor, its node)]
    for s, n in items(root, compiled, "sensors"):
        entry = DRIVERS.get(s.get("driver"), {})
        if entry.get("shared") or entry.get("check_chip"):
            try:
                module = driver(s["driver"])
                groups.setdefault(module.key(s), []).append((s, n))
            except (KeyError, TypeError):   # a place key with a problem of its own
                pass
    for group in groups.values():
        _share(ctx, group)
        check = DRIVERS[group[0][0]["driver"]]["check_chip"]
        if check is not None:
            check(ctx, group)


def _share(ctx, group):
    """The SHARED settings of one chip's sensors: each given once (or the same) holds for all."""
    from firmware.profile.chips import DRIVERS
    from hal.chips import driver
    if len(group) < 2:
        return
    s0 = group[0][0]
    module = driver(s0["driver"])
    for setting in DRIVERS[s0["driver"]]["shared"]:
        keys = setting.split(".")
        given = None    # (value, node) of the first sensor that writes it
        for s, n in group:
            node = find(n, *keys)
            if not node.path.endswith(setting):
                continue
            value = _get(s, keys)
            if given is None:
                given = (value, node)
            elif value != given[0]:
                ctx.problems.append(at(node, "%s differs from %s (%s), and both read the same "
                                       "chip (%s at %s), which has one %s: give it once, or "
                                       "the same on each" % (
                                           shown(node), given[1].path, shown(given[1]),
                                           s0["driver"], module.where(s0), keys[-1])))
        if given is not None:
            for s, n in group:
                _put(s, keys, given[0])


def _put(d, keys, value):
    for k in keys[:-1]:
        d = d.get(k)
        if not isinstance(d, dict):     # a section with a problem of its own
            return
    d[keys[-1]] = value


def _get(d, keys):
    for k in keys:
        d = d.get(k) if isinstance(d, dict) else None
    return d


def buffer_room(ctx, root, compiled):
    from agent.buffer import journal_bytes
    buffer_bytes = compiled.get("buffer", {}).get("max_bytes")
    batch_bytes = compiled.get("batch", {}).get("max_bytes")
    readings = compiled.get("batch", {}).get("max_readings")
    ram = compiled.get("buffer", {}).get("ram_readings")
    if None in (buffer_bytes, batch_bytes, readings, ram):
        return
    # The agent's own rule (agent/buffer.py): four batches and the journal. Four batches
    # alone passed here and stopped the agent at start (16 KiB with 4 KiB batches).
    journal = journal_bytes(readings, ram)
    if buffer_bytes >= 4 * batch_bytes + journal:
        return
    buffer_node, batch_node = find(root, "buffer", "max_bytes"), find(root, "batch", "max_bytes")
    need = "***" if batch_node.secret else format_size(4 * batch_bytes + journal)
    have = "***" if buffer_node.secret else format_size(buffer_bytes)
    where = buffer_node if buffer_node.path == "buffer.max_bytes" else batch_node
    ctx.problems.append(at(where, "the buffer must hold several batches: expected buffer.max_bytes "
                                  ">= 4 x batch.max_bytes + the journal (%d bytes for "
                                  "batch.max_readings %d) = %s, got %s"
                                  % (journal, readings, need, have)))
