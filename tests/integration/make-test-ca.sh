#!/bin/sh
# make-test-ca.sh DIR HOSTNAME — a throwaway CA and a server certificate
# for the integration tests (STARTTLS, implicit TLS).
#
# Creates, with the openssl command line:
#   DIR/ca.pem, DIR/ca.key          self-signed test CA
#   DIR/server.pem, DIR/server.key  server certificate signed by that CA, with
#                                   subjectAltName HOSTNAME, 127.0.0.1 and ::1
# All valid for a few days; keys are mode 0600. Quiet on success; on failure
# prints openssl's output and exits non-zero. Never use these outside tests.
set -eu

if [ $# -ne 2 ] || [ -z "$1" ] || [ -z "$2" ]; then
    echo "usage: $0 DIR HOSTNAME" >&2
    exit 2
fi
dir=$1
host=$2
days=3

case $host in
    *[!A-Za-z0-9.:-]*)
        echo "$0: bad host name: $host" >&2
        exit 2
        ;;
esac

# HOSTNAME goes in as an IP address entry when it is one, else as a DNS name.
case $host in
    *:*) san="IP:$host" ;;
    *[!0-9.]*) san="DNS:$host" ;;
    *) san="IP:$host" ;;
esac
[ "$host" = 127.0.0.1 ] || san="$san,IP:127.0.0.1"
[ "$host" = ::1 ] || san="$san,IP:::1"

mkdir -p "$dir"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/make-test-ca.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT TERM

# Runs openssl with its chatter in a log that is shown only on failure.
run_openssl()
{
    if ! openssl "$@" >"$tmp/log" 2>&1; then
        echo "$0: openssl $1 failed:" >&2
        cat "$tmp/log" >&2
        exit 1
    fi
}

# Our own config, so the system openssl.cnf can neither add nor clash.
cat >"$tmp/req.cnf" <<EOF
[req]
distinguished_name = dn
[dn]
[v3_ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF

cat >"$tmp/server.ext" <<EOF
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = $san
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
EOF

umask 077
run_openssl req -x509 -config "$tmp/req.cnf" -extensions v3_ca \
    -newkey rsa:2048 -nodes -sha256 -days "$days" \
    -subj "/O=Postern tests/CN=Postern Test CA" \
    -keyout "$dir/ca.key" -out "$dir/ca.pem"
run_openssl req -new -config "$tmp/req.cnf" \
    -newkey rsa:2048 -nodes -sha256 \
    -subj "/O=Postern tests/CN=$host" \
    -keyout "$dir/server.key" -out "$tmp/server.csr"
run_openssl x509 -req -in "$tmp/server.csr" -sha256 -days "$days" \
    -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -set_serial "0x$(openssl rand -hex 8)" \
    -extfile "$tmp/server.ext" -out "$dir/server.pem"
chmod 644 "$dir/ca.pem" "$dir/server.pem"
