"""Worker processes: how they start (``launcher``, ``forkserver`` and ``server``, with the
descriptors the caller holds in ``descriptors``), what they run (``worker``), the messages
between caller and worker (``protocol``), and the pool that feeds them (``pool``, ``tasks``)."""
