"""X-NUCLEO-LPM01A (PowerShield): protocol facts (``spec``), host driver and emulator."""
