# scripts/env.sh — source this (`. scripts/env.sh`) to point tests at the peers that
# scripts/install-peers installed. Every variable keeps a value already set.
#
#   AQUEDUCT_PEERS_DIR  absolute path of peers/ (C examples in $AQUEDUCT_PEERS_DIR/bin:
#                       broker send receive direct; RabbitMQ node state in rabbitmq/)
#   PROTON_EXAMPLES     Proton's examples (python/broker.py, python/simple_send.py, ...)
#   PROTON_PYTHON       the interpreter that has the `proton` module (Debian's python3,
#                       not a pyenv/venv python that may come first in PATH)
#   RHEA_NODE_PATH      node_modules holding rhea: NODE_PATH=$RHEA_NODE_PATH node -e "require('rhea')"
#   AQUEDUCT_RABBITMQ   the script that starts/stops a private RabbitMQ node
_aqueduct_root=$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)
export AQUEDUCT_PEERS_DIR="${AQUEDUCT_PEERS_DIR:-$_aqueduct_root/peers}"
export PROTON_EXAMPLES="${PROTON_EXAMPLES:-/usr/share/proton/examples}"
export PROTON_PYTHON="${PROTON_PYTHON:-/usr/bin/python3}"
export RHEA_NODE_PATH="${RHEA_NODE_PATH:-$AQUEDUCT_PEERS_DIR/node/node_modules}"
export AQUEDUCT_RABBITMQ="${AQUEDUCT_RABBITMQ:-$_aqueduct_root/scripts/rabbitmq}"
unset _aqueduct_root
