"""Signed webhooks of scan outcomes: endpoints, events, signing, delivery records and sending.

The terminal Lua scripts append a finished scan to its partition's outbox in the
same call that makes the end visible; a deliverer (hosted by the notifier) fans
each outbox entry out into delivery records and sends them, retrying with
backoff, so a ``kill -9`` anywhere loses nothing.
"""
