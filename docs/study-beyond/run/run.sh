#!/bin/bash
# phases of the study-beyond sweep, same run folder (a later phase resumes and only runs its new cells)
cd /work/wt/study
OUT=/work/runs-study/study-beyond
for p in /work/runs-study/phase1.json /work/runs-study/phase2.json configs/sweeps/study-beyond.json; do
  echo "=== $(date -u +%FT%TZ) phase $p load $(cut -d' ' -f1-3 /proc/loadavg)"
  /usr/bin/time -f "elapsed %e s, cpu %P" nice -n 10 python-worker/.venv/bin/python -m noisesearch_research.sweep "$p" --out $OUT --no-progress --no-report
  echo "=== $(date -u +%FT%TZ) done $p rc $? load $(cut -d' ' -f1-3 /proc/loadavg)"
done
