"""HTTP plumbing both web services share: JSON responses, errors and their handlers, clients.

The gateway and the notifier answer in the same shapes; keeping one copy of each
piece here is what keeps them from drifting apart.
"""
