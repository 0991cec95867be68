"""Developer tools of a planqa checkout, outside the runtime package (not in the wheel).

Run from the repository root; every path is an argument relative to the current
directory, and outputs go to build/ (untracked) unless `--out` says otherwise:

    python -m tools.bench [--quick] [--eval-set eval/qa.jsonl] [--out build/bench]
    python -m tools.load [--users 20] [--seconds 60] [--out build/bench]
"""
