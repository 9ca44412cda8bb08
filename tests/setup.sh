#!/usr/bin/env bash
# Everything the tests need from outside the venv: the servers they talk to and
# the Debian packages they start.  Idempotent; `make test` runs it first.
set -euo pipefail

need_apt=()
command -v victoria-metrics >/dev/null 2>&1 || need_apt+=(victoria-metrics)
# The backup's remote (a real sshd on loopback), its copy tool, and the browser that renders img/index.html.
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v rsync >/dev/null 2>&1 || need_apt+=(rsync)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium fonts-dejavu-core)
# A wrong wall clock for a real trade_agent.py process (the order-fault walk).
command -v faketime >/dev/null 2>&1 || need_apt+=(faketime)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing ${need_apt[*]} (Debian packages)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if ! mariadb-admin -uroot -h127.0.0.1 ping >/dev/null 2>&1; then
  echo "starting MariaDB"
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
  for _ in $(seq 60); do mariadb-admin -uroot -h127.0.0.1 ping >/dev/null 2>&1 && break; sleep 0.5; done
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  for _ in $(seq 20); do redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && break; sleep 0.25; done
fi
mariadb-admin -uroot -h127.0.0.1 ping >/dev/null
redis-cli -h 127.0.0.1 ping >/dev/null
