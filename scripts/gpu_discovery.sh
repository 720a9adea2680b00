#!/usr/bin/env bash
# Spark resource discovery script for GPUs (spark.worker.resource.gpu.discoveryScript, or
# spark.executor.resource.gpu.discoveryScript on YARN/Kubernetes): prints the resource as JSON,
#   {"name": "gpu", "addresses": ["0", "1"]}
# from nvidia-smi's device indices (none when nvidia-smi is missing: the worker then offers no GPU).
set -euo pipefail
addresses=""
if command -v nvidia-smi >/dev/null 2>&1; then
  addresses="$(nvidia-smi --query-gpu=index --format=csv,noheader | sed 's/ //g; s/.*/"&"/' | paste -sd, -)"
fi
echo "{\"name\": \"gpu\", \"addresses\": [${addresses}]}"
