#!/usr/bin/env bash
# Generate big event logs for benchmarks and load tests.
#
#   scripts/genlog.sh [--mix template|real] FILE LINES [GROUPS]
#
# --mix template (the default) writes the seed's one template,
#   "i|logN|appsetup|tom|<0..32767>|<1..GROUPS>|<unix time>", GROUPS 3 by default.
#
# --mix real writes what application logs hold (GROUPS 200 by default):
#   * users: 45% outside ASCII (accented Latin, Cyrillic, Greek, CJK, an emoji
#     now and then), the rest ASCII names;
#   * events and logs with spaces ("page view", "api gateway");
#   * about 1% of strings holding a '"' or a '\' (O"Brien, CORP\jsmith);
#   * values from -1,000,000 to 1,000,000, timestamps that move forwards by
#     0 to 3 s and now and then back by up to a minute;
#   * 1 line in 200 broken, spread over eight kinds: a missing field, an extra
#     field, an empty field, a tab in a field, a non-numeric value, a '+' sign,
#     a 20-digit id, a blank line.
#
# --schema SCHEMA writes lines for any schema file (scripts/genschema.py, with
#   the real mix: text outside ASCII, quotes, optional fields left empty, 1
#   line in 200 broken); GROUPS (200 by default) values of its group_by field.
#
# A FILE ending in .gz or .zst is written compressed (gzip -6, zstd -3: what
# logrotate and most shippers use), for the compressed-input benchmarks.
#
# The output is deterministic for a given GENLOG_SEED (default 1), so benchmark
# corpora are reproducible. awk does the work: a bash loop would take minutes
# for a million lines.
set -euo pipefail

usage() { echo "usage: $0 [--mix template|real | --schema SCHEMA] FILE LINES [GROUPS]" >&2; exit 2; }
mix=template
schema=
if [ "${1:-}" = "--mix" ]; then
    [ $# -ge 2 ] || usage
    mix=$2
    shift 2
elif [ "${1:-}" = "--schema" ]; then
    [ $# -ge 2 ] || usage
    schema=$2 mix=real
    shift 2
    [ -r "$schema" ] || { echo "genlog: cannot read the schema '$schema'" >&2; exit 2; }
fi
[ "$mix" = template ] || [ "$mix" = real ] || { echo "genlog: --mix must be template or real, got '$mix'" >&2; exit 2; }
[ $# -ge 2 ] && [ $# -le 3 ] || usage
default_groups=3
[ "$mix" = real ] && default_groups=200
file=$1 lines=$2 groups=${3:-$default_groups}
[[ $lines =~ ^[0-9]+$ ]] || { echo "genlog: LINES must be a whole number, got '$lines'" >&2; exit 2; }
[[ $groups =~ ^[1-9][0-9]*$ ]] || { echo "genlog: GROUPS must be at least 1, got '$groups'" >&2; exit 2; }

# Where the lines go: the file itself, or a compressor writing it.
emit() {
    case "$file" in
        *.gz) gzip -6 -n -c > "$file" ;;
        *.zst) zstd -3 -q -c > "$file" ;;
        *) cat > "$file" ;;
    esac
}

if [ -n "$schema" ]; then
    "${PYTHON:-python3}" "$(dirname "$0")/genschema.py" "$schema" "$lines" "$groups" "${GENLOG_SEED:-1}" | emit
    exit 0
fi

if [ "$mix" = template ]; then
    LC_ALL=C awk -v n="$lines" -v g="$groups" -v seed="${GENLOG_SEED:-1}" 'BEGIN {
        srand(seed)
        t = 1587583122
        for (i = 1; i <= n; i++) {
            printf "%d|log%d|appsetup|tom|%d|%d|%d\n", i, int(rand() * 9) + 1, int(rand() * 32768), int(rand() * g) + 1, t + int(i / 7)
        }
    }' | emit
    exit 0
fi

# The real mix. Strings are split on ";" into pools; LC_ALL=C makes awk pass
# the UTF-8 bytes through untouched.
LC_ALL=C awk -v n="$lines" -v g="$groups" -v seed="${GENLOG_SEED:-1}" '
function pick(pool, size) { return pool[int(rand() * size) + 1] }
BEGIN {
    srand(seed)
    nu_ascii = split("tom;alice;bob;carol;dave;eve;frank;grace;heidi;ivan;judy;mallory;oscar;peggy;trent;victor;walter;admin;svc-backup;j.doe;m_smith;guest42", ascii_users, ";")
    nu_intl = split("José;Łukasz;Zoë;François;Müller;Søren;Dvořák;Ångström;Björk;Çelik;Nguyễn Văn An;Ólafur;山田太郎;李娜;王伟;佐藤花子;김민준;Иван;Ольга;Дмитрий;Γιώργος;Ζωή;Αλέξανδρος;محمد;דוד;राहुल;Thảo;Ђорђе;Renée 🎉;ひろし", intl_users, ";")
    ne = split("appsetup;login;logout;page view;add to cart;checkout;search;error report;session start;password reset;file upload;api call", events, ";")
    nl = split("log1;log2;log3;log4;log5;web-01;web-02;api gateway;auth service;batch worker", logs, ";")
    nq = split("O\"Brien;CORP\\jsmith;say \"hi\";C:\\temp\\app;\"quoted\";back\\slash", quoted, ";")
    nb = split("missing;extra;empty;tab;alpha;plus;long;blank", broken, ";")
    t = 1587583122
    for (i = 1; i <= n; i++) {
        t += int(rand() * 4)
        if (rand() < 0.01) t -= int(rand() * 60)
        user = rand() < 0.45 ? pick(intl_users, nu_intl) : pick(ascii_users, nu_ascii)
        event = pick(events, ne)
        lg = pick(logs, nl)
        r = rand()
        if (r < 0.004) user = pick(quoted, nq)
        else if (r < 0.007) event = pick(quoted, nq)
        else if (r < 0.010) lg = pick(quoted, nq)
        value = int(rand() * 2000001) - 1000000
        group = int(rand() * g) + 1
        if (rand() < 0.005) {
            kind = pick(broken, nb)
            if (kind == "missing") { printf "%d|%s|%s|%s|%d|%d\n", i, lg, event, user, value, group; continue }
            if (kind == "extra") { printf "%d|%s|%s|%s|%d|%d|%d|extra\n", i, lg, event, user, value, group, t; continue }
            if (kind == "empty") user = ""
            else if (kind == "tab") event = event "\t" "x"
            else if (kind == "alpha") value = "12a" value
            else if (kind == "plus") value = "+" (value < 0 ? -value : value)
            else if (kind == "long") { printf "%d%s|%s|%s|%s|%d|%d|%d\n", i, "0000000000000000000", lg, event, user, value, group, t; continue }
            else if (kind == "blank") { printf "\n"; continue }
        }
        printf "%d|%s|%s|%s|%s|%d|%d\n", i, lg, event, user, value, group, t
    }
}' | emit
