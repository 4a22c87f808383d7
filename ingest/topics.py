"""The topics the ingest subscribes to and how a message's topic names its kind and device
(docs/uplink.md, "Topics")."""

SHARED = ("batch", "event", "health")  # split between the processes of a group
EVERYONE = ("up/schema", "status")  # every process needs every schema (and status)


def check_prefix(prefix):
    """The prefix without a trailing '/'; ValueError for an empty one or one with wildcards."""
    if not prefix.strip("/") or any(c in prefix for c in "+#"):
        raise ValueError("a topic prefix is a non-empty topic without wildcards")
    return prefix.rstrip("/")


def check_group(group):
    """ValueError unless group is None or a name a shared subscription can take."""
    if group is not None and (not group or any(c in group for c in "/+#")):
        raise ValueError("a shared subscription group is a non-empty name without / + #")
    return group


def subscriptions(prefix, group=None):
    """The topic filters of an ingest: the shared kinds under `$share/{group}-{kind}/` when in a
    group. A group per topic filter: rumqttd delivers only one filter's messages to a group that
    holds several (measured), and no broker minds the extra groups."""
    return (["%s%s/+/up/%s" % ("" if group is None else "$share/%s-%s/" % (group, k), prefix, k)
             for k in SHARED]
            + ["%s/+/%s" % (prefix, k) for k in EVERYONE])


def retained(prefix):
    """The filters of subscriptions() whose messages the devices retain (their schemas and
    statuses): a SUBSCRIBE to them again has the broker send every one again."""
    return ["%s/+/%s" % (prefix, k) for k in EVERYONE]


def command_topic(prefix, device):
    """Where a device takes downlink commands."""
    return "%s/%s/down/cmd" % (prefix, device)


def parse_topic(topic, prefix):
    """(kind, device) for `{prefix}/{device}/up/{batch,event,health,schema}` and
    `{prefix}/{device}/status`; (None, None) for anything else."""
    if not topic.startswith(prefix + "/"):
        return None, None
    parts = topic[len(prefix) + 1:].split("/")
    if not parts[0]:
        return None, None
    if len(parts) == 3 and parts[1] == "up" and parts[2] in ("batch", "event", "health", "schema"):
        return parts[2], parts[0]
    if len(parts) == 2 and parts[1] == "status":
        return "status", parts[0]
    return None, None
