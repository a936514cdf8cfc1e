"""Cost model (memory, operations, time, power, energy of on-device training) and recommender.
Pure Python + numpy: never imports Qt, never imports TensorFlow at import time."""
