# Enrol this node once: trade its one-time token for a certificate of its own.
# Runs as the agent's init container. Reads NODE_NAME, STATE_DIR, TOKEN_DIR, TOKEN_SECRET,
# CA_FILE and ENROL_ADDRESS from the environment. The key is made here and never leaves the
# node; STATE_DIR is on the host, so a node enrols once and its token is then spent.
set -eu
tls="$STATE_DIR/tls"
if [ -s "$tls/node.crt" ] && [ -s "$tls/node.key" ]; then
  echo "node $NODE_NAME is enrolled: $tls/node.crt exists"
  exit 0
fi
token_file="$TOKEN_DIR/$NODE_NAME"
if [ ! -s "$token_file" ]; then
  echo "node $NODE_NAME is not enrolled and Secret $TOKEN_SECRET has no key $NODE_NAME:" \
    "make a token with 'backstop pki token --node $NODE_NAME' and add it to that Secret" >&2
  exit 1
fi
if [ ! -s "$CA_FILE" ]; then
  echo "node $NODE_NAME cannot enrol: $CA_FILE is missing; put the Backstop CA certificate" \
    "(ca.crt) in the agent's CA ConfigMap" >&2
  exit 1
fi
exec backstop --log-format=json agent enroll --enrol-address="$ENROL_ADDRESS" \
  --ca="$CA_FILE" --node-id="$NODE_NAME" --state-dir="$STATE_DIR" --token="$(cat "$token_file")"
