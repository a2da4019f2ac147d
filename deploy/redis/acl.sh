#!/bin/sh
# Prints deploy/redis/users.acl as Redis loads it: comments removed, each user's password
# appended as a SHA-256 hash, so the rendered file holds no password either.
#   REDIS_PASSWORD           admin
#   REDIS_GATEWAY_PASSWORD   gateway
#   REDIS_CONSUMER_PASSWORD  consumer
# Each must be set and non-empty. Usage (compose.yaml's redis service does this):
#   sh deploy/redis/acl.sh > /tmp/users.acl && redis-server --aclfile /tmp/users.acl ...
set -eu

acl="${REDIS_ACL_TEMPLATE:-$(dirname "$0")/users.acl}"

password_of() {
    case "$1" in
        admin) printf '%s' "${REDIS_PASSWORD:?is empty: the admin user needs a password}" ;;
        gateway) printf '%s' "${REDIS_GATEWAY_PASSWORD:?is empty: the gateway user needs a password}" ;;
        consumer) printf '%s' "${REDIS_CONSUMER_PASSWORD:?is empty: the consumer user needs a password}" ;;
        *) echo "acl.sh: no password variable for user $1" >&2; exit 1 ;;
    esac
}

while IFS= read -r line; do
    case "$line" in
        "" | "#"*) continue ;;
        "user default "*) printf '%s\n' "$line" ;;
        "user "*)
            name="${line#user }"
            name="${name%% *}"
            password="$(password_of "$name")"
            hash="$(printf '%s' "$password" | sha256sum | cut -d ' ' -f 1)"
            printf '%s #%s\n' "$line" "$hash"
            ;;
        *) echo "acl.sh: unexpected line in $acl: $line" >&2; exit 1 ;;
    esac
done <"$acl"
