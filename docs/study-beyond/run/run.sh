#!/bin/bash
# study-beyond, re-run whole on this machine after first_predictions (c0f9850+)
cd /work/main
OUT=/work/runs-study/study-beyond
echo "=== $(date -u +%FT%TZ) start $(git rev-parse --short HEAD) load $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/time -f "elapsed %e s, cpu %P" python-worker/.venv/bin/python -m noisesearch_research.sweep configs/sweeps/study-beyond.json --out $OUT --no-progress
echo "=== $(date -u +%FT%TZ) done rc $? load $(cut -d' ' -f1-3 /proc/loadavg)"
