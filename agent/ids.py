# The device id rule, one for every party: the profile checker (firmware/profile/schema.py)
# refuses a profile whose id breaks it, the ingest (ingest/handlers.py) a message whose topic
# carries such an id. An id is a topic level, a folder name (the simulator's workdir) and a
# database key: 1 to 64 ASCII letters, digits, '-', '_' and '.', starting with a letter or a
# digit, so never '..', a hidden name, an option ('-x') or anything a browser would run.

MAX_LENGTH = 64
WHAT = ("an id of up to 64 letters, digits, '-', '_' and '.' that starts with a letter or "
        "a digit")


def _alnum(c):
    return "a" <= c <= "z" or "A" <= c <= "Z" or "0" <= c <= "9"


def valid(device_id):
    """True when device_id (a str) follows the rule above."""
    if not isinstance(device_id, str) or not 0 < len(device_id) <= MAX_LENGTH:
        return False
    if not _alnum(device_id[0]):
        return False
    for c in device_id:
        if not (_alnum(c) or c in "-_."):
            return False
    return True
