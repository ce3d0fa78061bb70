#!/usr/bin/env bash
# A throwaway sshd on 127.0.0.1 for the tests of the ssh launcher, which reach "two machines" as two
# lines of a hosts file naming this one.
#
#   bash tests/cluster/local_sshd.sh start DIR   # prints CIFAR_REPRO_SSH=DIR for the tests
#   bash tests/cluster/local_sshd.sh stop DIR
#
# DIR gets the host and client keys, sshd's config, its pid file and bin/ssh: the tests put that bin
# first on PATH, so the launcher's plain `ssh HOST -p PORT` uses the client key and config from DIR
# and nothing in ~/.ssh is read or written. The port is written to DIR/port. Needs openssh-server
# (installed with apt-get when missing: root).
set -euo pipefail
action=${1:?start or stop}
dir=${2:?folder}
PATH=/usr/sbin:/sbin:$PATH

case $action in
start)
    if ! command -v sshd >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q openssh-server openssh-client >/dev/null
    fi
    mkdir -p "$dir/bin" /run/sshd
    dir=$(cd "$dir" && pwd)
    [ -f "$dir/host_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/host_key"
    [ -f "$dir/client_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/client_key"
    cp "$dir/client_key.pub" "$dir/authorized_keys"
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    cat >"$dir/sshd_config" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $dir/host_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
PasswordAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
EOF
    cat >"$dir/ssh_config" <<EOF
Host *
  IdentityFile $dir/client_key
  UserKnownHostsFile /dev/null
  LogLevel ERROR
EOF
    printf '#!/bin/sh\nexec /usr/bin/ssh -F %s/ssh_config "$@"\n' "$dir" >"$dir/bin/ssh"
    chmod +x "$dir/bin/ssh"
    echo "$port" >"$dir/port"
    "$(command -v sshd)" -f "$dir/sshd_config"
    for _ in $(seq 50); do
        "$dir/bin/ssh" -o StrictHostKeyChecking=no -p "$port" 127.0.0.1 true 2>/dev/null && break
        sleep 0.1
    done
    "$dir/bin/ssh" -o StrictHostKeyChecking=no -p "$port" 127.0.0.1 true
    echo "CIFAR_REPRO_SSH=$dir"
    ;;
stop)
    if [ -f "$dir/sshd.pid" ]; then
        kill "$(cat "$dir/sshd.pid")" 2>/dev/null || true
        rm -f "$dir/sshd.pid"
    fi
    ;;
*)
    echo "usage: $0 start|stop DIR" >&2
    exit 2
    ;;
esac
