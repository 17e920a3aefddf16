"""Workers that claim scans from the consumer group and analyse them."""
