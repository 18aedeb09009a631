#!/bin/bash
# study-beyond-full: the copy of study-beyond, resumed with ZO-2 at 36/144/576 and Paths-2 at 144/576 (normal priority, machine quiet)
cd /work/wt/study2
OUT=/work/runs-study/study-beyond-full
echo "=== $(date -u +%FT%TZ) full load $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/time -f "elapsed %e s, cpu %P" python-worker/.venv/bin/python -m noisesearch_research.sweep configs/sweeps/study-beyond.json --out $OUT --no-progress --no-report
rc=$?
echo "=== $(date -u +%FT%TZ) done full rc $rc load $(cut -d' ' -f1-3 /proc/loadavg)"
