# The channel table: what each channel number in a compact batch means.
#
# Channels are a profile's sensors in profile order, each with a name, a unit and a resolution
# (a decimal: mantissa x 10**exponent). Readings are kept as integers scaled by the resolution,
# so 71.4 at resolution 0.1 is 714 and comes back as exactly 71.4.
import binascii

MAX_CHANNELS = 256  # a reading's channel is one byte (agent/buffer.py, agent/batch.py)


class Schema:
    def __init__(self, channels):
        """channels: a list of (name, unit, mantissa, exponent)."""
        self.channels = channels
        self.names = [c[0] for c in channels]
        self.index = {}
        for i, name in enumerate(self.names):
            self.index[name] = i
        self._id = None

    @property
    def id(self):
        """The schema id, computed when first asked for: the sampler alone never needs it, nor
        the CBOR encoder it takes."""
        if self._id is None:
            self._id = binascii.crc32(self.to_cbor()) & 0xFFFFFFFF
        return self._id

    @classmethod
    def from_profile(cls, profile):
        return cls([(s["name"], s.get("unit", ""), s["resolution"][0], s["resolution"][1])
                    for s in profile["sensors"]])

    def to_cbor(self):
        """The schema document: {"channels": [[name, unit, 4([exponent, mantissa])], ...]}.

        Its CRC-32 is the schema id that compact batches carry. The resolution is a CBOR decimal
        fraction, so a generic decoder shows 0.1 as Decimal('0.1'), not as a binary float.
        """
        from agent import cbor
        return cbor.dumps({"channels": [[n, u, cbor.Tag(4, [e, m])] for n, u, m, e in self.channels]})

    @classmethod
    def from_cbor(cls, data):
        from agent import cbor_decode
        from agent import cbor
        doc = cbor_decode.loads(data)
        try:
            if len(doc["channels"]) > MAX_CHANNELS:
                raise ValueError  # 100,000 channels in 1.5 MB: an ingest keeps every schema
            channels = []
            for name, unit, res in doc["channels"]:
                exponent, mantissa = res.value
                # Bounded, since readings are multiplied by 10**exponent and the mantissa.
                if (not isinstance(name, str) or not isinstance(unit, str) or res.tag != 4
                        or type(mantissa) is not int or type(exponent) is not int
                        or not 0 < mantissa < 1 << 64 or not -64 <= exponent <= 64):
                    raise ValueError
                channels.append((name, unit, mantissa, exponent))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise cbor.Malformed("not a Tether schema document")
        return cls(channels)

    def scale(self, channel, value):
        """The integer that stands for value at the channel's resolution (rounded to it)."""
        return self.scaler(channel)(value)

    def scaler(self, channel):
        """scale() of one channel as a function of the value, its power of ten worked out once
        (the sampler's every reading): the same arithmetic, so the same integers."""
        _, _, mantissa, exponent = self.channels[channel]
        if exponent >= 0:
            step = mantissa * 10 ** exponent

            def coarse(value):
                return round(value / step)
            return coarse
        power = 10 ** -exponent

        def fine(value):
            return round(value * power / mantissa)
        return fine

    def value(self, channel, n):
        """The reading that the scaled integer n stands for: an int, or the nearest float."""
        _, _, mantissa, exponent = self.channels[channel]
        return scaled_value(n * mantissa, exponent)


def scaled_value(m, exponent):
    """m x 10**exponent as an int when whole, else the float nearest to it (71.4, not 71.39999)."""
    if exponent >= 0:
        return m * 10 ** exponent
    return m / 10 ** -exponent
