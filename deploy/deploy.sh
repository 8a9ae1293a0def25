#!/usr/bin/env bash
# npm run deploy: the set-up, the deployment's images (quick when built), then the stack
# of deploy/compose.yml, up until nginx answers /ready. npm run undeploy takes it down.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-cyber-dojo-runner}
compose() { docker-compose -f deploy/compose.yml "$@"; }

if [ "${1:-}" = down ]; then
  compose down --remove-orphans --timeout 10
  exit 0
fi
deploy/setup.sh deployment
compose up -d --remove-orphans "$@"
url="http://${NGINX_BIND:-127.0.0.1:8080}"
answer() { node -e 'fetch(process.argv[1]).then(async (r) => { console.log(await r.text()); process.exit(r.ok ? 0 : 1) }, () => process.exit(1))' "$1"; }
for waited in $(seq 60); do
  if answer "$url/ready" >/dev/null 2>&1; then
    printf 'deployed: %s %s\n' "$url" "$(answer "$url/sha")"
    exit 0
  fi
  sleep 1
done
compose ps >&2
printf 'deploy: %s/ready did not answer 200 within 60 s\n' "$url" >&2
exit 1
