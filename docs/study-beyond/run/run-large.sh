#!/bin/bash
# study-beyond-large (every algorithm at 2304, seed 0), after study-beyond finishes
cd /work/main
while pgrep -f "sweep configs/sweeps/study-beyond.json" > /dev/null; do sleep 20; done
OUT=/work/runs-study/study-beyond-large
echo "=== $(date -u +%FT%TZ) start $(git rev-parse --short HEAD) load $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/time -f "elapsed %e s, cpu %P" python-worker/.venv/bin/python -m noisesearch_research.sweep configs/sweeps/study-beyond-large.json --out $OUT --no-progress
echo "=== $(date -u +%FT%TZ) done rc $? load $(cut -d' ' -f1-3 /proc/loadavg)"
