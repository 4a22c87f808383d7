# A virtual board ADC: what machine.ADC gives on an ESP32 (12-bit SAR), through read_u16().
#
#   adc = SimADC(raw12=2048)      or   adc = SimADC(); adc.volts = 1.65
#
# read_u16() scales the 12-bit raw reading as MicroPython's esp32 port does
# (ports/esp32/machine_adc.c: u16 = raw << 4 | raw >> 8), so read_u16() >> 4 is the raw reading
# exactly. `volts` maps linearly onto 0..4095 over 0..full_scale_volts (3.3 V by default; a real
# ESP32 at 11 dB attenuation is neither linear nor exact near the ends: calibrate with raw values).
#
# Fault: adc.disconnected = "low" (an open input pulled down: reads 0) or "high" (shorted to the
# supply: reads full scale); None when wired.


class SimADC:
    def __init__(self, raw12=0, full_scale_volts=3.3):
        self.raw12 = raw12
        self.full_scale_volts = full_scale_volts
        self.disconnected = None

    def clear(self):
        """Ends its fault (SimPlatform.clear): the input is connected again."""
        self.disconnected = None

    @property
    def volts(self):
        return self.raw12 * self.full_scale_volts / 4095

    @volts.setter
    def volts(self, v):
        raw = int(v / self.full_scale_volts * 4095 + 0.5)
        self.raw12 = max(0, min(4095, raw))

    def read_u16(self):
        if self.disconnected == "low":
            raw = 0
        elif self.disconnected == "high":
            raw = 4095
        else:
            raw = max(0, min(4095, int(self.raw12)))
        return (raw << 4) | (raw >> 8)
