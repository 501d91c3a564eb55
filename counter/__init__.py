"""The counter app: the offline-capable tablet and phone app's static files, served at /counter/."""

from pathlib import Path

STATIC = Path(__file__).resolve().parent
