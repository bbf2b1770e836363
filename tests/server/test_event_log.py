"""The contact-event log in memory (server/social/event_log.py) answers exactly what the
SQL over `contact_events` answered: counts since a time, to minors, distinct targets."""

from __future__ import annotations

from server.social.event_log import ContactEventLog


def log_of(*rows: tuple[str, str, str, bool, float]) -> ContactEventLog:
    log = ContactEventLog()
    log.load(rows)
    return log


def test_counts_since_a_time_by_event_to_minors_and_distinct_targets():
    log = log_of(
        ("ada", "t1", "new_contact", True, 100.0),
        ("ada", "t1", "new_contact", True, 200.0),
        ("ada", "bob", "new_contact", False, 300.0),
        ("ada", "t2", "lookup", True, 400.0),
        ("eve", "t1", "new_contact", True, 500.0),
    )
    assert log.count("ada", ("new_contact",), 0.0) == 3
    assert log.count("ada", ("new_contact",), 200.0) == 2  # `since` is inclusive, as >=
    assert log.count("ada", ("new_contact",), 0.0, to_minors=True) == 2
    assert log.count("ada", ("new_contact",), 0.0, to_minors=True, distinct_targets=True) == 1
    assert log.count("ada", ("new_contact", "lookup"), 0.0, distinct_targets=True) == 3
    assert log.count("ada", ("declined_by_minor",), 0.0) == 0
    assert log.count("nobody", ("new_contact",), 0.0) == 0
    assert log.has("ada", "t2", "lookup", 400.0)
    assert not log.has("ada", "t2", "lookup", 400.5)
    assert not log.has("ada", "bob", "lookup", 0.0)


def test_an_event_logged_with_a_clock_set_back_still_counts_in_order():
    log = ContactEventLog()
    log.add("ada", "t1", "lookup", True, 500.0)
    log.add("ada", "t2", "lookup", True, 100.0)  # an injected clock moved back
    log.add("ada", "t3", "lookup", True, 300.0)
    assert log.count("ada", ("lookup",), 200.0) == 2
    assert log.count("ada", ("lookup",), 0.0) == 3


def test_prune_forgets_what_is_older_and_keeps_the_rest():
    log = log_of(
        ("ada", "t1", "lookup", True, 100.0),
        ("ada", "t2", "lookup", True, 300.0),
        ("bob", "t1", "lookup", True, 100.0),
    )
    log.prune(200.0)
    assert log.count("ada", ("lookup",), 0.0) == 1
    assert log.count("bob", ("lookup",), 0.0) == 0
    log.add("bob", "t3", "lookup", True, 400.0)
    assert log.count("bob", ("lookup",), 0.0) == 1
