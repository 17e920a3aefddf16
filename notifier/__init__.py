"""Server-Sent Events of scan progress, fanned out from one Redis reader per process."""
