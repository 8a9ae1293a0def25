#!/usr/bin/env bash
# npm run deploy: the set-up, the deployment's images (quick when built), then the stack
# of deploy/compose.yml, up until nginx answers /ready and every function's service. npm run undeploy takes it down.
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
# Up: /ready answers 200, and no function's path is nginx's 503 function:unavailable
# (each service starts on its own, and on a busy host some come up after info).
up() {
  node -e '
    const [url, ...paths] = process.argv.slice(1);
    const down = async (path) => {
      const r = await fetch(`${url}/${path}`, { method: "POST", body: "{}" });
      return r.status === 503 && (await r.text()).includes("function:unavailable");
    };
    (async () => {
      if (!(await fetch(`${url}/ready`)).ok) process.exit(1);
      for (const path of paths) if (await down(path)) process.exit(1);
    })().catch(() => process.exit(1));
  ' "$url" kata_new kata_old kata_exists avatar_new avatar_old avatar_exists run image_pulled image_pull
}
for waited in $(seq 120); do
  if up; then
    printf 'deployed: %s %s\n' "$url" "$(answer "$url/sha")"
    exit 0
  fi
  sleep 1
done
compose ps >&2
printf 'deploy: %s did not have every function up within 120 s\n' "$url" >&2
exit 1
