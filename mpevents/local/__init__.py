"""The local engine: reader, worker and collector processes on this machine, and their supervisor."""
