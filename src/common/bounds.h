/*
 * bounds.h - every limit Pigeon enforces, in one place, each with its reason.
 * A limit that an administrator may want to change is a config setting whose
 * default lives here; the rest are fixed by the protocols.
 */
#ifndef PIGEON_BOUNDS_H
#define PIGEON_BOUNDS_H

/* RFC 2449 §4: a command line is at most 255 octets including the CRLF. */
#define POP3_MAX_COMMAND_LINE 255

/* RFC 2449 §4: the first line of a response is at most 512 octets incl. CRLF. */
#define POP3_MAX_RESPONSE_LINE 512

/* RFC 1939 §3: a keyword is 3 or 4 characters; we accept up to 4. */
#define POP3_MAX_KEYWORD 4

/* No POP3 command takes more than two arguments (TOP msg n, APOP name digest). */
#define POP3_MAX_ARGS 2

/*
 * SASL continuation lines are not commands and may exceed 255 octets (RFC 5034
 * §4); OAuth tokens run to several KiB. 16 KiB of base64 is generous.
 */
#define POP3_MAX_SASL_LINE 16384

/* RFC 4616 §2: each PLAIN field is at most 255 octets. */
#define SASL_MAX_FIELD 255

/* User names longer than this are refused before any lookup. */
#define AUTH_MAX_USERNAME 255
#define AUTH_MAX_PASSWORD 1024

/*
 * RFC 1939 §7: a unique-id is 1..70 characters in 0x21..0x7E.
 */
#define POP3_UIDL_MAX 70

/* Lines emitted per batch of a LIST/UIDL listing before yielding to I/O, so a
 * 100,000-message listing never sits whole in memory. */
#define POP3_LISTING_BATCH 256

/* Messages per maildrop; beyond this the session gets -ERR [SYS/PERM]. */
#define STORE_MAX_MESSAGES 1000000

/* Bytes read from a message file per step while streaming RETR/TOP. With the
 * worst-case expansion (every byte an LF, every line a dot) output per step is
 * bounded by 3x this. */
#define STORE_STREAM_CHUNK 16384

/* Output buffered for a client before we stop producing more (back-pressure). */
#define SERVER_OUTPUT_HIGH_WATER (64 * 1024)

/* Input buffered from a pipelining client before we stop reading the socket. */
#define SERVER_INPUT_HIGH_WATER (32 * 1024)

/* Defaults of settings (see docs/configuration.md). */
#define DEFAULT_MAX_SESSIONS 10000
#define DEFAULT_PREAUTH_TIMEOUT 120       /* seconds; not regulated by the RFC */
#define DEFAULT_IDLE_TIMEOUT 600          /* RFC 1939 §3: at least 10 minutes */
#define MIN_IDLE_TIMEOUT 600              /* RFC 1939 §3: the MUST */
#define DEFAULT_SEND_TIMEOUT 600          /* no progress writing to the client */
#define DEFAULT_MAX_BAD_COMMANDS 10
#define DEFAULT_MAX_AUTH_FAILURES 3
#define DEFAULT_AUTH_FAILURE_DELAY_MS 2000
#define DEFAULT_WORKER_THREADS 4
#define DEFAULT_MAX_SESSIONS_PER_IP 50   /* an office behind NAT runs many clients */
#define DEFAULT_TLS_HANDSHAKE_TIMEOUT 30 /* seconds from accept to a finished handshake */
#define DEFAULT_MAX_FAILURE_DELAY_MS 15000
#define DEFAULT_IP_FAILURE_LIMIT 20      /* failures per address (IPv6: per /64) ... */
#define DEFAULT_USER_FAILURE_LIMIT 50    /* ... and per account, within ... */
#define DEFAULT_PENALTY_WINDOW 900       /* ... 15 minutes */

/* RFC 5321 §4.5.3.1.4: command lines are at most 512 octets with CRLF. */
#define LMTP_MAX_COMMAND_LINE 512
/* RFC 5321 §4.5.3.1.6 allows 1000-octet text lines; we accept longer ones
 * (robustness) up to this, and refuse the message beyond it. */
#define LMTP_MAX_DATA_LINE 65536
/* RFC 5321 §4.5.3.1.4: a path is at most 256 octets. */
#define LMTP_MAX_ADDRESS 256
/* RFC 5321 §4.5.3.1.8: accept at least 100 recipients per transaction. */
#define DEFAULT_LMTP_MAX_RECIPIENTS 100
#define DEFAULT_MAX_MESSAGE_SIZE (50ULL * 1024 * 1024)
/* RFC 5321 §4.5.3.2.7: a server waits at least 5 minutes for a command. */
#define DEFAULT_LMTP_TIMEOUT 300
/* How long a delivery waits for the maildrop's delivery lock (quota check +
 * publish). Holders only rescan new/ + cur/, rename and fsync new/: 5 s is
 * ample, and stays under the 10 s pigeond's master grants a stopping worker. */
#define DELIVER_LOCK_WAIT_MS 5000

/* Configuration files: longest line and longest value. */
#define CONFIG_MAX_LINE 1024

#endif
