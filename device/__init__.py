"""Everything that is, or talks to, hardware: transports, the LPM01A driver and emulator, the NUCLEO
protocol, discovery, the virtual bench and the reference training engine.  Never imports Qt."""
