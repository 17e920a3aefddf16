"""HTTP front door of labelscan."""
