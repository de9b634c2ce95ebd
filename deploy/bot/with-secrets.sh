#!/bin/sh
# Puts the secrets that escalation-bot reads from the environment only (they have no *_FILE form) into its
# environment from Docker secret files, then runs the command given (docker-compose.yml: escalation-bot run).
#
#   /run/secrets/imap_password_BOARD-ID  ->  ESCALATION_BOT_IMAP_PASSWORD_BOARD_ID (upper case, - as _)
#   /run/secrets/smtp_password           ->  ESCALATION_BOT_SMTP_PASSWORD
#   /run/secrets/bot_secret              ->  ESCALATION_BOT_SECRET (signs Message-IDs; with PostgreSQL the bot
#                                            keeps one in the database, so this is optional)
#
# The database URL needs no help: ESCALATION_BOT_DATABASE_URL_FILE names its file. A file's trailing newline is
# dropped. Nothing is printed: the values never reach the logs.
set -eu

for file in /run/secrets/imap_password_*; do
    [ -f "$file" ] || continue
    board=${file#/run/secrets/imap_password_}
    var=ESCALATION_BOT_IMAP_PASSWORD_$(printf '%s' "$board" | tr 'abcdefghijklmnopqrstuvwxyz-' 'ABCDEFGHIJKLMNOPQRSTUVWXYZ_')
    export "$var=$(cat "$file")"
done
if [ -f /run/secrets/smtp_password ]; then
    ESCALATION_BOT_SMTP_PASSWORD=$(cat /run/secrets/smtp_password)
    export ESCALATION_BOT_SMTP_PASSWORD
fi
if [ -f /run/secrets/bot_secret ]; then
    ESCALATION_BOT_SECRET=$(cat /run/secrets/bot_secret)
    export ESCALATION_BOT_SECRET
fi

exec "$@"
