"""What both engines share of the output: names on disk, putting results back in
order, the counts, the collector core, the journal and the atomic commit."""
