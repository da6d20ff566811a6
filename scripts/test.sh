#!/usr/bin/env bash
# Installs what the tests need (apt + ./.venv with the [test] extra), then runs every check:
# ruff (src, tests, benchmarks, scripts), mypy --strict, import-linter contracts, the layering script (no import up the layers, no
# circle), the 600-line module limit, the generated layout in docs/architecture.md, and the whole
# pytest suite (unit, contract, system). All of them run; the script fails if any of them fails.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k smoke`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/setup.sh
source scripts/lib/setup.sh
# The scale-out configuration's parts (issue 14): private instances are started below.
CUMULO_APT_NEEDS+=(
  "/usr/lib/postgresql:postgresql"
  "/usr/lib/rabbitmq/bin/rabbitmq-server:rabbitmq-server"
)
cumulo_setup test

# A private PostgreSQL cluster and RabbitMQ node for the run (own ports, own dirs, random
# password), stopped and removed at the end whatever happens; tests read their URLs from the env.
# The system tests' scaled configuration (tests/system/cluster.py: a database and a vhost per
# cloud, 3 dev hosts in network namespaces, root) runs on them too.
services_dir="$(mktemp -d /tmp/cumulo-test-services.XXXXXX)"
rmdir "$services_dir"
stop_services() { .venv/bin/python scripts/services.py stop "$services_dir" || true; }
trap stop_services EXIT
cumulo_log "starting PostgreSQL and RabbitMQ for the tests"
eval "$(.venv/bin/python scripts/services.py start "$services_dir")"

failed=()
check() {
  cumulo_log "$*"
  if ! "$@"; then
    failed+=("$1")
  fi
}

check .venv/bin/ruff check src tests benchmarks scripts
check .venv/bin/mypy
check .venv/bin/lint-imports
check .venv/bin/python scripts/import_graph.py
check .venv/bin/python scripts/module_sizes.py
check .venv/bin/python scripts/layout.py --check
# Per-test limit: a hung server or client fails one test instead of the whole run. The 25 slowest
# tests are listed at the end, to keep an eye on the 30-minute budget.
# pytest exits 5 when it collects no test; that is a failure here like any other non-zero.
# Parallel (pytest-xdist): the suite mostly waits (VM boots under TCG, cloud restarts, polling), so
# CUMULO_TEST_WORKERS (default 3) workers run whole files (--dist loadfile: a module's shared cloud
# stays in one worker; a system module on both configurations is two units, its [embedded] and its
# [scaled] tests, which may run at once: tests/conftest.py), in collection order (contract, system, unit: the long modules start first
# and the many short unit files fill the end); the data plane leftover check runs once, in the
# controller, after every worker finished (tests/conftest.py). CUMULO_TEST_WORKERS=0 runs serially.
check .venv/bin/pytest tests -q --timeout=300 --durations=25 -n "${CUMULO_TEST_WORKERS:-3}" --dist loadfile \
  --no-loadscope-reorder "$@"

# The PostgreSQL test mode (issue 14): the compare-and-swap, quota and claim heavy unit modules run
# again with CUMULO_TEST_DB=postgresql, each test on a fresh database of the run's PostgreSQL
# (tests/conftest.py pg_test_mode; about 2 minutes). Skipped when arguments pick the tests.
pg_mode_tests() {
  CUMULO_TEST_DB=postgresql .venv/bin/pytest -q --timeout=300 -n "${CUMULO_TEST_WORKERS:-3}" --dist loadfile \
    tests/unit/compute/test_servers_api.py tests/unit/compute/test_servers_actions.py \
    tests/unit/compute/test_resources_quotas.py tests/unit/compute/test_user_quota_enforcement.py \
    tests/unit/compute/test_server_groups_api.py tests/unit/scheduler/test_placement.py \
    tests/unit/compute/test_nodes_per_host.py \
    tests/unit/identity/test_identity_admin.py tests/unit/identity/test_identity_tokens.py \
    tests/unit/network/test_ipam.py tests/unit/network/test_network_api.py tests/unit/volume/test_volume_api.py \
    tests/unit/test_paas_engine.py tests/unit/test_db_locks.py
}
if [ "$#" -eq 0 ]; then
  check pg_mode_tests
fi

if [ "${#failed[@]}" -gt 0 ]; then
  echo "FAILED: ${failed[*]}" >&2
  exit 1
fi
