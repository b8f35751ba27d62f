"""The output directory, shared by both engines: names on disk, the commit, the journal."""
