"""What a person sees of a run: the scoreboard in shared memory, the dashboard, the trace, profiles."""
