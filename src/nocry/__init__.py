"""nocry: Linux defence against ransomware, wipers and bulk document theft.

Pipeline stages are packages: sensor/ (fanotify), capture/ (disk -> versions), vault/ (store),
restore/ (plans and their application), cli/ (the ``nocry`` command); daemon.py wires them.
"""

__version__ = "0.1.0"
