#!/usr/bin/env bash
# The official postgres image's entrypoint behaviour, written again for the stand-in (the
# upstream script is docker-library/postgres, docker-entrypoint.sh). What it keeps:
# - run as root: own the data and socket directories, then re-run itself as postgres;
# - an empty PGDATA: refuse to start without POSTGRES_PASSWORD, run initdb with
#   POSTGRES_USER (default postgres) and the password, allow host connections with the
#   server's password_encryption method (scram-sha-256), start a socket-only temporary
#   server, create POSTGRES_DB (default: the user's name), run
#   /docker-entrypoint-initdb.d/*.sql and *.sh, stop the temporary server;
# - a PGDATA holding a database: skip all of that;
# - finally exec the command (postgres).
# Left out: the *_FILE variants, POSTGRES_INITDB_ARGS/WALDIR and compressed init files.
set -Eeo pipefail

if [ "${1:0:1}" = '-' ]; then
	set -- postgres "$@"
fi

if [ "$1" = 'postgres' ]; then
	: "${POSTGRES_USER:=postgres}" "${POSTGRES_DB:=$POSTGRES_USER}" "${POSTGRES_HOST_AUTH_METHOD:=}"
	export POSTGRES_USER POSTGRES_DB

	mkdir -p "$PGDATA"
	chmod 00700 "$PGDATA" || :
	mkdir -p /var/run/postgresql || :
	chmod 03775 /var/run/postgresql || :
	if [ "$(id -u)" = '0' ]; then
		find "$PGDATA" \! -user postgres -exec chown postgres '{}' +
		find /var/run/postgresql \! -user postgres -exec chown postgres '{}' +
		exec gosu postgres "$BASH_SOURCE" "$@"
	fi

	if [ -s "$PGDATA/PG_VERSION" ]; then
		printf '\nPostgreSQL Database directory appears to contain a database; Skipping initialization\n\n'
	else
		if [ -z "$POSTGRES_PASSWORD" ] && [ 'trust' != "$POSTGRES_HOST_AUTH_METHOD" ]; then
			echo >&2 'Error: Database is uninitialized and superuser password is not specified.'
			echo >&2 '       You must specify POSTGRES_PASSWORD to a non-empty value for the superuser.'
			exit 1
		fi
		initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD")

		shift_args=("${@:2}")
		: "${POSTGRES_HOST_AUTH_METHOD:=$(postgres -C password_encryption "${shift_args[@]}")}"
		printf '\nhost all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD" >> "$PGDATA/pg_hba.conf"

		export PGPASSWORD="${PGPASSWORD:-$POSTGRES_PASSWORD}"
		NOTIFY_SOCKET= PGUSER="$POSTGRES_USER" pg_ctl -D "$PGDATA" \
			-o "$(printf '%q ' "${shift_args[@]}" -c listen_addresses='' -p "${PGPORT:-5432}")" -w start

		psql=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc)
		exists="$(PGHOST= "${psql[@]}" --dbname postgres --set db="$POSTGRES_DB" --tuples-only \
			<<<"SELECT 1 FROM pg_database WHERE datname = :'db' ;")"
		if [ -z "$exists" ]; then
			PGHOST= "${psql[@]}" --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db" ;'
		fi
		for f in /docker-entrypoint-initdb.d/*; do
			case "$f" in
				*.sh)  echo "$0: running $f"; . "$f" ;;
				*.sql) echo "$0: running $f"; PGHOST= "${psql[@]}" --dbname "$POSTGRES_DB" -f "$f" ;;
				*)     [ -e "$f" ] && echo "$0: ignoring $f" ;;
			esac
		done

		PGUSER="$POSTGRES_USER" pg_ctl -D "$PGDATA" -m fast -w stop
		unset PGPASSWORD
		printf '\nPostgreSQL init process complete; ready for start up.\n\n'
	fi
fi

exec "$@"
