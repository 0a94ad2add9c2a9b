"""SFER-MDFAE teaching and explainability workbook (Shou et al., Sensors 2024)."""

from sfer import threads

__version__ = "0.1.0"

# torch's CPU threads: as many as the cores this process may use, and idle threads that sleep
# rather than spin while other processes load those cores (sfer.threads; SFER_THREADS=off skips it).
threads.configure()
