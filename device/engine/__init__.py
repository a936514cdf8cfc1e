"""On-device training engine: numpy reference of what the STM32 firmware computes (work in progress)."""
