"""SFER-MDFAE teaching and explainability workbook (Shou et al., Sensors 2024).

Importing the package, or any part of it, changes nothing in the process: the CPU thread
policy is applied by the ``sfer`` command line, the notebooks' first cells and
``sfer.threads.configure()`` (see :mod:`sfer.threads`).
"""

__version__ = "0.1.0"
