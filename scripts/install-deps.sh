#!/bin/sh
# Installs the Debian 12 packages Postern builds and tests with, if any is
# missing. Runs as root; does nothing when everything is already there.
set -e
PKGS="build-essential autoconf automake pkg-config clang libclang-rt-14-dev
libevent-dev libssl-dev libconfig-dev libcmocka-dev libcrypt-dev
openssl python3 swaks postfix libc-ares-dev nsd dnsutils"
PKGS="$PKGS liblmdb-dev libhiredis-dev redis-server postgrey"
PKGS="$PKGS clamav-daemon clamav"
PKGS="$PKGS libspf2-dev"
PKGS="$PKGS libgmime-3.0-dev libarchive-dev libmagic-dev zip"
PKGS="$PKGS libopendkim-dev libopendmarc-dev libgmime-3.0-dev publicsuffix opendkim-tools python3-dkim"
PKGS="$PKGS spamassassin spamd spamc"
PKGS="$PKGS libmilter-dev opendkim opendkim-tools opendmarc clamav-milter spamass-milter miltertest iproute2"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# postfix's postinst tries to start a service; without systemd that fails harmlessly.
apt-get install -y -qq $missing >/dev/null
