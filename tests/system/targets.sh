#!/bin/sh
# Processes for tests/system/run to track, started in the container as a
# transient service (systemd-run): this script stays their parent and reaps each
# as it exits, so nsfdd can read their exit statuses. Writes their pids, one a
# line, to /run/nsfd-targets: nsfd-user's sleep; a shell that exits 7 on SIGTERM
# (wait status 1792); eight sleeps in fresh net and uts namespaces (hostnames
# target3 ... target10).
set -e
rm -f /run/nsfd-targets /run/nsfd-targets.new
setpriv --reuid=nsfd-user --regid=nsfd-user --clear-groups sleep 3600 &
echo $! >>/run/nsfd-targets.new
sh -c 'trap "exit 7" TERM; sleep 3600 & wait' &
echo $! >>/run/nsfd-targets.new
for i in 3 4 5 6 7 8 9 10; do
    unshare --net --uts sh -c "hostname target$i; exec sleep 3600" &
    echo $! >>/run/nsfd-targets.new
done
mv /run/nsfd-targets.new /run/nsfd-targets
wait
