"""The `cumulo` command: `cumulo up` runs the all-in-one cloud; image build helpers for operators."""
