#!/usr/bin/env bash
# Static checks of the Dockerfiles (no Docker engine needed): see lint.mjs.
set -euo pipefail
exec node "$(dirname "${BASH_SOURCE[0]}")/lint.mjs"
