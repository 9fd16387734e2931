#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Runs "$@" as the first process of a new pid namespace (unshare --pid --fork),
# for NSFD_TEST_DAEMON_WRAPPER. unshare(1) itself ignores SIGTERM while it
# waits, so this passes SIGTERM and SIGINT on, and exits as "$@" did.
unshare --pid --fork --kill-child "$@" &
unshare=$!
forwarded=
trap 'forwarded=1; kill -TERM $(cat /proc/$unshare/task/$unshare/children) 2>/dev/null' TERM INT
wait $unshare
status=$?
while [ -n "$forwarded" ]; do
    # The first wait was cut short by the signal: this one gets the status.
    forwarded=
    wait $unshare
    status=$?
done
exit $status
