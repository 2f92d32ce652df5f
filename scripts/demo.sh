#!/usr/bin/env bash
# make demo: grows with each issue.
set -euo pipefail
echo "demo: nothing to show yet" >&2
exit 1
