"""Worker processes: how they start (``launcher``, ``server``), what they run (``worker``), and the
pool that feeds them (``pool``)."""
