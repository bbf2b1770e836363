"""The console's screens: queues with the overview, a queue's cases, one case, and the
dialogs (reveal, decide)."""
