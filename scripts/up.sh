#!/usr/bin/env bash
# Installs what Cumulo needs (apt + ./.venv, with the openstack CLI), then runs the all-in-one cloud in the foreground.
# Arguments go to `cumulo up`; the state dir defaults to ./state.
#   bash scripts/up.sh [--host 127.0.0.1] [--port 8080] [--fake-hosts N] [--state-dir DIR]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/setup.sh
source scripts/lib/setup.sh
cumulo_setup client  # the `openstack` CLI and openstacksdk come along, to use the cloud

state_given=0
for arg in "$@"; do
  case "$arg" in --state-dir | --state-dir=*) state_given=1 ;; esac
done
if [ "$state_given" = 0 ]; then
  set -- --state-dir ./state "$@"
fi
exec .venv/bin/cumulo up "$@"
