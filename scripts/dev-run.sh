#!/bin/sh
# The README's run command: installs what is missing, builds, makes a test
# certificate, and runs posternd in the foreground on conf/postern-dev.conf
# (SMTP on 127.0.0.1:2525, submission on 127.0.0.1:2587).
set -e
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
sh scripts/install-deps.sh
sh scripts/build.sh build --enable-werror
mkdir -p /var/tmp/postern-dev
# make-test-ca.sh's certificates last 3 days: a new one when it is missing
# or expires within a day
openssl x509 -checkend 86400 -noout -in /var/tmp/postern-dev/tls/server.pem \
    >/dev/null 2>&1 ||
    sh tests/integration/make-test-ca.sh /var/tmp/postern-dev/tls postern.dev.test
echo "posternd: SMTP on 127.0.0.1:2525, submission on 127.0.0.1:2587 (Ctrl-C stops)"
exec ./build/posternd -c conf/postern-dev.conf
