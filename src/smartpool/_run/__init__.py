"""Running a call: the :class:`~smartpool._run.run.Run`, its events, and what it feeds backends."""
